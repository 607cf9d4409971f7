"""Flash crowds against the real buy endpoint: gunicorn (several processes with threads),
PostgreSQL, raw sockets, every request released by one synchronized burst.

Each race runs several times on the same server, each time on a fresh drop and batch, and the
invariants are checked by SQL after every run.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, text

from shop import clock, drops
from shop.extensions import db
from shop.models import Drop, User
from testkit import bursts, rawhttp, seed
from tests.concurrency.conftest import (
    AT_THE_LIMIT,
    REPETITIONS,
    SOLD_OUT,
    assert_burst,
    assert_no_server_errors,
    hold_units,
    login_all,
    stock,
    violations,
)

pytestmark = pytest.mark.concurrency

NOT_LIVE = "not open for buying"


@pytest.fixture(scope="module")
def crowd_customers(seed_app):
    return seed.create_customers(seed_app, 50)


@pytest.fixture(scope="module")
def crowd(shop_server, crowd_customers) -> list[rawhttp.ShopSession]:
    """Fifty customers, each logged in on their own session."""
    return login_all(shop_server.address, crowd_customers, page="/account/")


def fresh_batch(app, **batch) -> tuple[seed.LiveDrop, int]:
    drop = seed.seed_live_drop(app, **batch)
    return drop, drop.batch_id


def winners_reach_stripe(address, crowd, responses, emulator) -> bool:
    """Every winner follows buy's 303 to ``pay``, all at once, and gets a Checkout Session of
    its own on the emulator."""
    onward = [
        session.get_request(response.location)
        for session, response in zip(crowd, responses, strict=True)
        if response.status == 303
    ]
    answers = bursts.burst(address, onward).responses
    locations = [r.location or "" for r in answers]
    return (
        all(r.status == 303 for r in answers)
        and all(url.startswith(f"{emulator.url}/checkout/") for url in locations)
        and len(set(locations)) == len(onward)
    )


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_fifty_customers_racing_for_the_last_ten_units_get_exactly_ten(
    seed_app, shop_server, emulator, crowd, repetition
):
    _, batch_id = fresh_batch(seed_app, edition_size=40, limit=2)
    hold_units(seed_app, batch_id, [2] * 15, now=clock.now(), paid=True)  # 10 units left

    outcome = bursts.burst(shop_server.address, [s.buy_request(batch_id, 1) for s in crowd])

    assert_burst(outcome, shop_server, won=10, lost=40, saying=SOLD_OUT)
    assert winners_reach_stripe(shop_server.address, crowd, outcome.responses, emulator)
    assert stock(seed_app, batch_id) == (40, 30, 10)
    assert violations(seed_app, batch_id) == []


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_one_customer_on_two_devices_cannot_hold_more_than_the_limit(
    seed_app, shop_server, crowd_customers, repetition
):
    _, batch_id = fresh_batch(seed_app, edition_size=50, limit=2)
    customer = crowd_customers[repetition]
    phone, laptop = login_all(shop_server.address, [customer, customer], page="/account/")
    requests = [device.buy_request(batch_id, 1) for device in (phone, laptop) for _ in range(10)]

    outcome = bursts.burst(shop_server.address, requests)

    assert_burst(outcome, shop_server, won=2, lost=18, saying=AT_THE_LIMIT)
    assert stock(seed_app, batch_id) == (50, 0, 2)
    assert violations(seed_app, batch_id) == []


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_two_customers_asking_for_two_of_the_last_three_units_never_oversell(
    seed_app, shop_server, crowd, repetition
):
    _, batch_id = fresh_batch(seed_app, edition_size=5, limit=2)
    hold_units(seed_app, batch_id, [2], now=clock.now())  # 3 units left
    first, second = crowd[2 * repetition], crowd[2 * repetition + 1]
    requests = [c.buy_request(batch_id, 2) for c in (first, second) for _ in range(5)]

    outcome = bursts.burst(shop_server.address, requests)

    assert_no_server_errors(outcome.responses, shop_server)
    assert outcome.count(303) == 1  # two of three; the last unit can't make a pair
    assert sorted(set(outcome.statuses())) == [303, 409]
    assert stock(seed_app, batch_id) == (5, 0, 4)
    assert violations(seed_app, batch_id) == []  # includes: each customer within the limit


def close_when_the_first_hold_lands(app, drop: seed.LiveDrop, batch_id: int) -> dict:
    """The maker closes the drop mid-burst, from another connection.

    It locks the drop row first (waiting for every hold that share-locked it), then reads the
    clock and runs ``drops.close_drop``, so every hold that committed before the close has a
    creation time before ``closed_at``. Returns that time and the closing transaction's id.
    """
    deadline = time.monotonic() + 10
    with app.app_context():
        while not db.session.execute(
            text("SELECT EXISTS (SELECT 1 FROM orders WHERE batch_id = :id)"), {"id": batch_id}
        ).scalar_one():
            db.session.rollback()
            if time.monotonic() > deadline:
                raise TimeoutError("no hold was taken")
            time.sleep(0.001)
        db.session.rollback()
        locked = db.session.scalars(
            select(Drop).where(Drop.id == drop.drop_id).with_for_update()
        ).one()
        closer_xid = db.session.execute(
            text("SELECT pg_current_xact_id()::text::bigint % 4294967296")
        ).scalar_one()
        closed_at = clock.now()
        drops.close_drop(locked, actor=db.session.get(User, drop.maker_id), now=closed_at)
        db.session.commit()
        db.session.remove()
    return {"closed_at": closed_at, "closer_xid": closer_xid}


def holds_of(app, batch_id: int) -> list[dict]:
    """Each successful hold with its drop's ``closed_at`` and the id of the transaction that
    took it. That id comes from the allotment row the hold inserted (never updated in this
    race); the order row itself is updated later, when its Checkout Session is stored."""
    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT o.created_at, d.closed_at, a.xmin::text::bigint AS xid FROM orders o "
                "JOIN batches b ON b.id = o.batch_id JOIN drops d ON d.id = b.drop_id "
                "JOIN allotments a ON a.customer_id = o.customer_id AND a.batch_id = o.batch_id "
                "WHERE o.batch_id = :id"
            ),
            {"id": batch_id},
        ).mappings()
        found = [dict(row) for row in rows]
        db.session.remove()
    return found


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_a_drop_closed_mid_burst_takes_no_hold_after_the_close(
    seed_app, shop_server, crowd, repetition
):
    drop, batch_id = fresh_batch(seed_app, edition_size=100, limit=2)
    buyers = crowd[:40]

    outcome = bursts.burst(
        shop_server.address,
        [s.buy_request(batch_id, 1) for s in buyers],
        alongside=lambda: close_when_the_first_hold_lands(seed_app, drop, batch_id),
    )
    after = bursts.burst(shop_server.address, [s.buy_request(batch_id, 1) for s in crowd[40:]])

    assert_no_server_errors(outcome.responses + after.responses, shop_server)
    held = holds_of(seed_app, batch_id)
    assert len(held) == outcome.count(303) >= 1
    assert outcome.count(303) + outcome.count(409) == len(buyers)
    assert all(h["created_at"] <= h["closed_at"] for h in held)
    # Strict order: every hold share-locked the drop before the close locked it.
    assert all(h["xid"] < outcome.alongside["closer_xid"] for h in held)
    assert after.statuses() == [409] * len(after.responses)
    assert all(NOT_LIVE in r.text for r in after.responses)
    assert violations(seed_app, batch_id) == []

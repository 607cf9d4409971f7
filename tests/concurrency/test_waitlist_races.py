"""The waitlist under real concurrency: units freed by the sweeper are offered to the line, never
sold to a crowd buying at the same instant — gunicorn (several processes with threads), several
sweeper and offer processes, PostgreSQL, every request and process released together.

Each race runs several times on the same server, each time on a fresh drop and batch; the
invariants (``shop ledger --check``'s, which know the waitlist) are checked after every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from shop import clock, waitlist
from shop.extensions import db
from shop.models import Batch, Order, WaitlistPlace
from shop.models.order import CROWD, HELD, WAITLIST
from shop.models.waitlist import LAPSED, OFFERED, WAITING
from testkit import bursts, factories, invariants, rawhttp, seed
from tests.concurrency.conftest import (
    REPETITIONS,
    SOLD_OUT,
    Racers,
    assert_no_server_errors,
    hold_units,
    login_all,
)

pytestmark = pytest.mark.concurrency

EDITION = 10


@pytest.fixture(scope="module")
def crowd(seed_app, shop_server) -> list[rawhttp.ShopSession]:
    """Forty customers, each logged in on their own session."""
    return login_all(shop_server.address, seed.create_customers(seed_app, 40), page="/account/")


@pytest.fixture(scope="module")
def background(race_database_url) -> Iterator[Racers]:
    """Two sweepers and two offer workers, each a process of its own."""
    racing = Racers(race_database_url, count=4)
    yield racing
    racing.close()


def sold_out_with_expired_holds(app) -> int:
    """A batch of ``EDITION`` whose every unit is held by a crowd hold that ran out."""
    batch_id = seed.seed_live_drop(app, edition_size=EDITION, limit=2).batch_id
    hold_units(app, batch_id, [1] * EDITION, now=clock.now() - timedelta(minutes=15))
    return batch_id


def all_violations(app, batch_id: int) -> list[str]:
    """The ledger's, and what accounts hold across the drop (offers count there too)."""
    with app.app_context(), db.engine.connect() as connection:
        drop_id = connection.execute(select(Batch.drop_id).where(Batch.id == batch_id)).scalar_one()
        return invariants.violations(connection, batch_id) + (
            invariants.held_across_drop_violations(connection, drop_id)
        )


def line_up(app, batch_id: int, count: int) -> list[int]:
    """``count`` customers join the batch's waitlist, in this order; their place ids."""
    with app.app_context():
        batch = db.session.get(Batch, batch_id)
        places = []
        for _ in range(count):
            place = waitlist.join(batch, 1, customer=factories.make_customer(), now=clock.now())
            db.session.commit()
            places.append(place.id)
        db.session.remove()
    return places


def race(server, background, crowd, batch_id) -> bursts.Burst:
    """The crowd buys while two sweepers release the expired holds and two workers offer."""
    actions = [{"action": "sweep"}] * 2 + [{"action": "offer"}] * 2
    return bursts.burst(
        server.address,
        [session.buy_request(batch_id, 1) for session in crowd],
        alongside=lambda: background.race(actions),
    )


def settle(background) -> None:
    """One more sweep and offer pass after the race, then offers alone (units a racing sweep
    freed after an offer pass had looked, or a batch busy then, wait for the next pass)."""
    background.race([{"action": "sweep"}] * 2 + [{"action": "offer"}] * 2)
    background.race([{"action": "offer"}] * 4)


def outcome(app, batch_id: int) -> dict:
    with app.app_context():
        batch = db.session.get(Batch, batch_id)
        orders = db.session.scalars(select(Order).where(Order.batch_id == batch_id)).all()
        places = db.session.scalars(
            select(WaitlistPlace)
            .where(WaitlistPlace.batch_id == batch_id)
            .order_by(WaitlistPlace.id)
        ).all()
        found = {
            "stock": (batch.sold, batch.held, batch.reserved, batch.waiting),
            "crowd_held": sum(o.quantity for o in orders if o.kind == CROWD and o.state == HELD),
            "offers": {o.customer_id: o for o in orders if o.kind == WAITLIST},
            "places": [(p.id, p.customer_id, p.state, p.order_id) for p in places],
        }
        db.session.remove()
    return found


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_units_freed_while_fifteen_wait_all_go_to_the_line_none_to_a_racing_crowd(
    seed_app, shop_server, background, crowd, repetition
):
    batch_id = sold_out_with_expired_holds(seed_app)
    line = line_up(seed_app, batch_id, 15)

    burst = race(shop_server, background, crowd, batch_id)
    settle(background)

    assert_no_server_errors(burst.responses, shop_server)
    swept = burst.alongside[:2]
    assert sum(counts["released"] for counts in swept) == EDITION  # all freed during the burst
    assert burst.statuses() == [409] * len(crowd)
    assert all(SOLD_OUT in r.text for r in burst.responses)
    found = outcome(seed_app, batch_id)
    assert found["crowd_held"] == 0
    assert found["stock"] == (0, EDITION, 0, 5)  # all ten held as offers, five still waiting
    # The first ten in line got one unit each, in line order; the last five still wait.
    offered = [p for p in found["places"] if p[2] == OFFERED]
    assert [p[0] for p in offered] == line[:10]
    assert [p[0] for p in found["places"] if p[2] == WAITING] == line[10:]
    for _place_id, customer_id, _state, order_id in offered:
        offer = found["offers"][customer_id]
        assert offer.id == order_id and offer.state == HELD and offer.quantity == 1
    assert all_violations(seed_app, batch_id) == []


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_with_three_waiting_the_line_is_served_first_and_the_crowd_gets_the_rest(
    seed_app, shop_server, background, crowd, repetition
):
    batch_id = sold_out_with_expired_holds(seed_app)
    line = line_up(seed_app, batch_id, 3)

    first = race(shop_server, background, crowd, batch_id)
    settle(background)
    second = bursts.burst(shop_server.address, [s.buy_request(batch_id, 1) for s in crowd])

    assert_no_server_errors(first.responses + second.responses, shop_server)
    found = outcome(seed_app, batch_id)
    assert [p[0] for p in found["places"] if p[2] == OFFERED] == line
    assert len(found["offers"]) == 3
    # The seven units nobody waited for went back to the crowd only once the line was served,
    # and the crowd took exactly those seven across both bursts.
    assert first.count(303) + second.count(303) == found["crowd_held"] == EDITION - 3
    assert found["stock"] == (0, EDITION, 0, 0)
    assert all_violations(seed_app, batch_id) == []


def offers_run_out(app, batch_id: int) -> None:
    """Every waitlist offer of the batch reaches its deadline unpaid."""
    with app.app_context():
        db.session.execute(
            update(Order)
            .where(Order.batch_id == batch_id, Order.kind == WAITLIST, Order.state == HELD)
            .values(hold_expires_at=clock.now() - timedelta(minutes=1))
        )
        db.session.commit()
        db.session.remove()


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_offers_that_run_out_while_the_crowd_buys_move_on_to_the_next_in_line(
    seed_app, shop_server, background, crowd, repetition
):
    batch_id = sold_out_with_expired_holds(seed_app)
    line = line_up(seed_app, batch_id, 20)
    settle(background)  # the first ten get offers
    offers_run_out(seed_app, batch_id)

    burst = race(shop_server, background, crowd, batch_id)
    settle(background)

    assert_no_server_errors(burst.responses, shop_server)
    assert burst.statuses() == [409] * len(crowd)
    found = outcome(seed_app, batch_id)
    states = {place_id: state for place_id, _customer, state, _order in found["places"]}
    assert [states[place_id] for place_id in line] == [LAPSED] * 10 + [OFFERED] * 10
    assert found["crowd_held"] == 0 and found["stock"] == (0, EDITION, 0, 0)
    assert all_violations(seed_app, batch_id) == []

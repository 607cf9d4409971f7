"""A draw under real concurrency (issue 17, item 1): customers entering at the same instant
through gunicorn (several processes with threads), one account from two devices, two workers
drawing the same drop at once, and two workers passing unpaid wins on, against PostgreSQL. The
draw claims the drop with one compare-and-set, so it is drawn exactly once; the edition goes
to the draw order, never past ``sold + held <= edition_size``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from shop import clock, draws, inventory
from shop.extensions import db
from shop.models import Order
from shop.models.order import EXPIRED
from testkit import bursts, factories, rawhttp, seed
from tests.concurrency.conftest import assert_no_server_errors, login_all, stock, violations

pytestmark = pytest.mark.concurrency

REPETITIONS = 3
ENTRANTS = 12


@pytest.fixture(scope="module")
def entrants(seed_app, shop_server) -> list[rawhttp.ShopSession]:
    """Twelve accounts logged in, and the first of them once more on a second device."""
    customers = seed.create_customers(seed_app, ENTRANTS)
    sessions = login_all(shop_server.address, customers, page="/account/")
    return [*sessions, rawhttp.login(shop_server.address, customers[0].email)]


def seed_draw(app, *, edition_size: int, limit: int) -> tuple[str, int, int]:
    """A draw drop taking entries now (real clock): its slug, drop id and batch id."""
    now = clock.now()
    with app.app_context():
        drop = factories.make_draw_drop(
            opens_at=now - timedelta(hours=1), closes_at=now + timedelta(hours=1)
        )
        batch = factories.make_batch(drop=drop, edition_size=edition_size, limit=limit)
        seeded = (drop.slug, drop.id, batch.id)
        db.session.commit()
        db.session.remove()
    return seeded


def close_entries(app, drop_id: int) -> None:
    with app.app_context():
        db.session.execute(
            text("UPDATE drops SET closes_at = :at WHERE id = :id"),
            {"at": clock.now() - timedelta(seconds=1), "id": drop_id},
        )
        db.session.commit()
        db.session.remove()


def draw_rows(app, drop_id: int) -> dict:
    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT e.position, e.state, e.units, e.quantity, o.state AS order_state "
                "FROM draw_entries e LEFT JOIN orders o ON o.id = e.order_id "
                "WHERE e.drop_id = :id ORDER BY e.position"
            ),
            {"id": drop_id},
        ).all()
        drawn_at = db.session.execute(
            text("SELECT drawn_at FROM drops WHERE id = :id"), {"id": drop_id}
        ).scalar_one()
        orders = db.session.execute(
            text(
                "SELECT count(*) FROM orders o JOIN batches b ON b.id = o.batch_id "
                "WHERE b.drop_id = :id"
            ),
            {"id": drop_id},
        ).scalar_one()
        db.session.remove()
    return {"rows": rows, "drawn_at": drawn_at, "orders": orders}


@pytest.mark.parametrize(
    ("edition_size", "expected_units"),
    [(5, 5), (40, ENTRANTS * 2)],
    ids=["more-entries-than-units", "fewer-entries-than-units"],
)
@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_entries_at_one_instant_then_two_workers_drawing_at_once_draw_it_once(
    seed_app, shop_server, entrants, racers, edition_size, expected_units, repetition
):
    slug, drop_id, batch_id = seed_draw(seed_app, edition_size=edition_size, limit=2)
    requests = [
        session.form_request(f"/drops/{slug}/batches/{batch_id}/enter", {"quantity": 2})
        for session in entrants
    ]

    entered = bursts.burst(shop_server.address, requests)

    assert_no_server_errors(entered.responses, shop_server)
    # Twelve accounts are in; the first account's second device is refused.
    assert entered.count(303) == ENTRANTS
    refused = [r for r in entered.responses if r.status != 303]
    assert [r.status for r in refused] == [409]
    assert "already entered" in refused[0].text

    close_entries(seed_app, drop_id)
    lines = racers.race([{"action": "draws"}, {"action": "draws"}])

    drew = [line for result in lines for line in result if line.startswith(f"draw {slug}:")]
    assert len(drew) == 1, lines  # exactly one worker drew this drop
    seen = draw_rows(seed_app, drop_id)
    rows = seen["rows"]
    assert seen["drawn_at"] is not None
    assert [row.position for row in rows] == list(range(1, ENTRANTS + 1))
    winners = [row for row in rows if row.state == "won"]
    assert seen["orders"] == len(winners)  # one hold per winner, none twice
    assert sum(row.units for row in winners) == expected_units
    assert all(row.order_state == "held" for row in winners)
    # The winners are the first entries in draw order.
    assert [row.position for row in winners] == list(range(1, len(winners) + 1))
    assert stock(seed_app, batch_id) == (edition_size, 0, expected_units)
    assert violations(seed_app, batch_id) == []


def test_the_published_draw_from_the_server_verifies(seed_app, shop_server, entrants, racers):
    from shop import verify_draw

    slug, drop_id, batch_id = seed_draw(seed_app, edition_size=3, limit=2)
    for session in entrants[:5]:
        assert (
            session.post(f"/drops/{slug}/batches/{batch_id}/enter", {"quantity": 1}).status == 303
        )
    close_entries(seed_app, drop_id)
    racers.race([{"action": "draws"}, {"action": "draws"}])

    address = f"http://{shop_server.address[0]}:{shop_server.address[1]}/drops/{slug}/draw"
    published = verify_draw.load(address)

    assert verify_draw.check(published) == []
    assert published["commitment"] == draws.commitment_of(published["seed"])


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_two_workers_pass_units_winners_left_unpaid_down_the_order_once(
    seed_app, shop_server, entrants, racers, repetition
):
    slug, drop_id, batch_id = seed_draw(seed_app, edition_size=4, limit=2)
    for session in entrants[:ENTRANTS]:
        assert (
            session.post(f"/drops/{slug}/batches/{batch_id}/enter", {"quantity": 2}).status == 303
        )
    close_entries(seed_app, drop_id)
    racers.race([{"action": "draws"}, {"action": "draws"}])
    # Both winners let their holds run out (the sweeper released them).
    with seed_app.app_context():
        for order in db.session.scalars(select(Order).where(Order.batch_id == batch_id)).all():
            inventory.release(order, EXPIRED, now=clock.now())
        db.session.commit()
        db.session.remove()

    lines = racers.race([{"action": "draws"}, {"action": "draws"}])

    passed = [line for result in lines for line in result if line.startswith("draws:")]
    assert sum(int(line.split(", ")[1].split()[0]) for line in passed) == 2, lines
    rows = draw_rows(seed_app, drop_id)["rows"]
    assert [row.state for row in rows[:4]] == ["lapsed", "lapsed", "won", "won"]
    assert all(row.state == "waiting" for row in rows[4:])
    assert [row.order_state for row in rows[2:4]] == ["held", "held"]
    assert stock(seed_app, batch_id) == (4, 0, 4)
    assert violations(seed_app, batch_id) == []

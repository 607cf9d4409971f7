"""Sweepers and confirmations racing each other from separate processes on PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import text

from shop import clock
from shop.extensions import db
from testkit import seed
from tests.concurrency.conftest import REPETITIONS, hold_units, order_states, stock, violations

pytestmark = pytest.mark.concurrency


@pytest.fixture(scope="module")
def drop(seed_app):
    return seed.seed_live_drop(seed_app, edition_size=1, limit=1)


def expired_holds(app) -> int:
    with app.app_context():
        count = db.session.execute(
            text("SELECT count(*) FROM orders WHERE state = 'held' AND hold_expires_at <= :now"),
            {"now": clock.now()},
        ).scalar_one()
        db.session.remove()
    return count


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_two_sweepers_return_every_expired_unit_exactly_once(seed_app, racers, drop, repetition):
    batch_id = seed.add_batch(seed_app, drop, edition_size=40, limit=2)
    long_ago = clock.now() - timedelta(minutes=30)
    order_ids = hold_units(seed_app, batch_id, [2, 1] * 8, now=long_ago)
    assert stock(seed_app, batch_id) == (40, 0, 24)
    expired = expired_holds(seed_app)

    counts = racers.race([{"action": "sweep"}, {"action": "sweep"}])

    assert sum(c["released"] for c in counts) == expired
    assert set(order_states(seed_app, order_ids).values()) == {"expired"}
    assert stock(seed_app, batch_id) == (40, 0, 0)
    assert violations(seed_app, batch_id) == []


def _both_ways(racers, action: str, order_ids: list[int]) -> Counter:
    """Two processes ``action`` the same orders at once, in opposite orders: how many times
    each order was done."""
    first, second = racers.race(
        [
            {"action": action, "order_ids": order_ids},
            {"action": action, "order_ids": list(reversed(order_ids))},
        ]
    )
    done_by_first = zip(order_ids, first, strict=True)
    done_by_second = zip(reversed(order_ids), second, strict=True)
    return Counter(order_id for order_id, done in [*done_by_first, *done_by_second] if done)


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_releasing_one_hold_from_two_processes_returns_its_units_once(
    seed_app, racers, drop, repetition
):
    batch_id = seed.add_batch(seed_app, drop, edition_size=40, limit=2)
    order_ids = hold_units(seed_app, batch_id, [2, 1] * 8, now=clock.now())

    releases = _both_ways(racers, "release", order_ids)

    assert releases == Counter(order_ids)  # each order released by exactly one process
    assert stock(seed_app, batch_id) == (40, 0, 0)
    assert violations(seed_app, batch_id) == []


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_confirming_one_order_from_two_processes_assigns_its_serials_once(
    seed_app, racers, drop, repetition
):
    batch_id = seed.add_batch(seed_app, drop, edition_size=20, limit=2)
    hold_units(seed_app, batch_id, [1, 2], now=clock.now(), paid=True)  # serials 1..3 taken
    order_ids = hold_units(seed_app, batch_id, [2, 1] * 4, now=clock.now())

    confirmations = _both_ways(racers, "confirm", order_ids)

    assert confirmations == Counter(order_ids)
    assert set(order_states(seed_app, order_ids).values()) == {"paid"}
    assert stock(seed_app, batch_id) == (20, 15, 0)
    assert violations(seed_app, batch_id) == []  # serials 1..15, no gap, no duplicate

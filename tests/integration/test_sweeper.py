"""``sweeper.sweep``: expired holds are released only once Stripe confirms their session is dead."""

import threading
from datetime import datetime, timedelta

import pytest

from shop import clock, create_app, inventory, sweeper
from shop.extensions import db
from shop.models import Batch, Order
from shop.models.order import EXPIRED, HELD, PAID
from testkit import databases
from testkit.factories import make_customer
from tests.support.stripe import fresh, held_order, live_batch, stripe_settings, without_retries


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


def _held(batch_id: int) -> int:
    db.session.rollback()  # a fresh snapshot: requests commit in sessions of their own
    return db.session.get(Batch, batch_id).held


def _after_hold() -> datetime:
    return clock.now() + timedelta(minutes=11)


def test_an_abandoned_session_is_expired_at_stripe_then_released(app, emulator):
    order = held_order(live_batch(edition_size=5), make_customer(), 2)

    counts = sweeper.sweep(_after_hold())

    assert counts["released"] == 1
    assert emulator.session(order.checkout_session_id)["status"] == "expired"
    assert fresh(order).state == EXPIRED and _held(order.batch_id) == 0


def test_a_session_paid_while_its_webhook_was_lost_is_fulfilled_not_released(app, emulator):
    order = held_order(live_batch(edition_size=5), make_customer(), 1)
    emulator.complete(order.checkout_session_id)

    counts = sweeper.sweep(_after_hold())

    assert counts["fulfilled"] == 1 and counts["released"] == 0
    assert fresh(order).state == PAID and [u.serial for u in fresh(order).units] == [1]


def test_when_stripe_is_unreachable_the_hold_is_kept_for_the_next_pass(app, emulator):
    order = held_order(live_batch(edition_size=5), make_customer(), 1)
    without_retries(app)
    emulator.faults(fail_next=1, fail_status=500, paths=["/v1/checkout/sessions"])
    first_pass = _after_hold()

    assert sweeper.sweep(first_pass)["kept"] == 1
    assert fresh(order).state == HELD and _held(order.batch_id) == 1

    assert sweeper.sweep(first_pass + timedelta(minutes=2))["released"] == 1
    assert fresh(order).state == EXPIRED and _held(order.batch_id) == 0


def test_a_hold_whose_session_was_never_created_is_released_without_asking_stripe(app, emulator):
    order = inventory.hold(
        live_batch(edition_size=5).id, 1, customer=make_customer(), now=clock.now()
    )
    db.session.commit()
    assert sweeper.sweep(_after_hold())["released"] == 1
    assert fresh(order).state == EXPIRED


def test_a_hold_that_has_not_run_out_is_left_alone(app, emulator):
    order = held_order(live_batch(edition_size=5), make_customer(), 1)
    assert sweeper.sweep(clock.now())["released"] == 0
    assert emulator.session(order.checkout_session_id)["status"] == "open"
    assert fresh(order).state == HELD


def test_several_sweepers_at_once_release_each_hold_exactly_once(postgresql_url, emulator):
    app = create_app(databases.testing_config(postgresql_url, **stripe_settings(emulator)))
    with app.app_context():
        batch = live_batch(edition_size=12, limit=2)
        held = [held_order(batch, make_customer(), 2) for _ in range(5)]
        batch_id, order_ids = batch.id, [o.id for o in held]
        db.session.remove()
    barrier = threading.Barrier(4)
    results: list[dict] = []

    def sweep_in_a_thread() -> None:
        with app.app_context():
            barrier.wait()
            results.append(sweeper.sweep(_after_hold()))
            db.session.remove()

    threads = [threading.Thread(target=sweep_in_a_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    try:
        with app.app_context():
            assert sum(r["released"] for r in results) == 5 and len(results) == 4
            assert all(db.session.get(Order, i).state == EXPIRED for i in order_ids)
            assert db.session.get(Batch, batch_id).held == 0
    finally:
        with app.app_context():
            databases.clean_up()

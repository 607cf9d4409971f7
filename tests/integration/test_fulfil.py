"""``orders.fulfil`` and ``refunds.refund_order`` against the emulator: exactly once, never both."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from shop import clock, inventory, orders, refunds
from shop.errors import InvalidState
from shop.extensions import db
from shop.models import AuditEntry, Batch, Order
from shop.models.order import EXPIRED, HELD, PAID, REFUNDED
from testkit.factories import make_customer, make_maker
from tests.support.stripe import (
    fresh,
    held_and_sold,
    held_order,
    live_batch,
    paid_order,
    sign_in,
    stripe_settings,
    unconfirmed_refund,
)
from tests.support.wire import recorded_statements


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


def _fill(batch: Batch, units: int) -> None:
    for _ in range(units):
        inventory.hold(batch.id, 1, customer=make_customer(), now=clock.now())
    db.session.commit()


def test_fulfilling_twice_pays_once_and_numbers_once(app, emulator):
    order = held_order(live_batch(edition_size=5), make_customer(), 2)
    emulator.complete(order.checkout_session_id)

    first = orders.fulfil(order.checkout_session_id, now=clock.now())
    second = orders.fulfil(order.checkout_session_id, now=clock.now())

    assert (first, second) == (orders.FULFILLED, orders.ALREADY_PAID)
    paid = fresh(order)
    assert paid.state == PAID and [u.serial for u in paid.units] == [1, 2]
    assert held_and_sold(order.batch_id) == (0, 2)


def test_a_payment_holds_its_batchs_row_only_for_what_needs_the_numbers(app, emulator):
    order = held_order(live_batch(edition_size=5), make_customer(), 2)
    emulator.complete(order.checkout_session_id)
    db.session.commit()
    with recorded_statements(db.engine, commits=True) as sent:
        assert orders.fulfil(order.checkout_session_id, now=clock.now()) == orders.FULFILLED

    locked = sent[next(i for i, s in enumerate(sent) if s.startswith("UPDATE batches")) :]
    locked = locked[1 : locked.index("COMMIT")]  # every hold of the batch waits for these
    kinds = {(s.split()[0], re.search(r"(?:INTO|FROM|UPDATE) (\w+)", s)[1]) for s in locked}
    assert kinds == {
        ("UPDATE", "held_by_account"),  # the hoarding counters, after the batch as holds do
        ("INSERT", "units"),  # the numbers
        ("SELECT", "units"),  # the receipt names them
        ("INSERT", "messages"),  # the receipt, committed with the payment
    }
    assert sent[-1] == "COMMIT"  # and nothing read again once it is committed


def test_an_unpaid_session_fulfils_nothing(app, emulator):
    order = held_order(live_batch(edition_size=5), make_customer(), 1)
    assert orders.fulfil(order.checkout_session_id, now=clock.now()) == orders.PENDING
    assert fresh(order).state == HELD and held_and_sold(order.batch_id) == (1, 0)


def test_a_payment_for_a_released_hold_takes_the_units_back_when_they_are_left(
    app, client, emulator
):
    customer = make_customer()
    order = held_order(live_batch(edition_size=5), customer, 2)
    emulator.complete(order.checkout_session_id)
    inventory.release(order, EXPIRED, now=clock.now())  # released by mistake
    db.session.commit()
    sign_in(client, customer)

    page = client.get(f"/checkout/success?session_id={order.checkout_session_id}")

    assert "Paid — No.&nbsp;1 and No.&nbsp;2 of 5" in page.get_data(as_text=True)
    assert fresh(order).state == PAID and held_and_sold(order.batch_id) == (0, 2)


def test_a_payment_for_a_released_hold_of_a_sold_out_batch_is_refunded_exactly_once(
    app, client, emulator
):
    customer = make_customer()
    batch = live_batch(edition_size=3, limit=1)
    order = held_order(batch, customer, 1)
    emulator.complete(order.checkout_session_id)
    inventory.release(order, EXPIRED, now=clock.now())
    db.session.commit()
    _fill(batch, 3)  # meanwhile every unit went to others
    sign_in(client, customer)

    page = client.get(f"/checkout/success?session_id={order.checkout_session_id}")
    again = orders.fulfil(order.checkout_session_id, now=clock.now())

    assert again == orders.REFUNDED_NOW
    refunded = fresh(order)
    assert refunded.state == REFUNDED and refunded.units == []
    assert refunded.refund_reason == orders.SOLD_OUT_REASON
    assert orders.SOLD_OUT_REASON in page.get_data(as_text=True)
    [refund] = emulator.refunds(refunded.payment_intent_id)
    assert refund["amount"] == 2500 and refund["id"] == refunded.refund_id
    assert held_and_sold(batch.id) == (3, 0)


def test_a_payment_over_the_customers_limit_after_release_is_refunded(app, emulator):
    customer = make_customer()
    batch = live_batch(edition_size=5, limit=1)
    order = held_order(batch, customer, 1)
    emulator.complete(order.checkout_session_id)
    inventory.release(order, EXPIRED, now=clock.now())
    inventory.hold(batch.id, 1, customer=customer, now=clock.now())  # they bought it again
    db.session.commit()

    assert orders.fulfil(order.checkout_session_id, now=clock.now()) == orders.REFUNDED_NOW
    assert fresh(order).state == REFUNDED
    assert len(emulator.refunds(fresh(order).payment_intent_id)) == 1


def test_a_payment_that_does_not_match_the_order_is_refunded_not_fulfilled(app, emulator):
    order = held_order(live_batch(edition_size=5, price=2500), make_customer(), 1)
    emulator.complete(order.checkout_session_id)
    db.session.execute(  # the order now says 30.00; Stripe took 25.00
        Order.__table__.update().where(Order.id == order.id).values(unit_price=3000, amount=3000)
    )
    db.session.commit()

    assert orders.fulfil(order.checkout_session_id, now=clock.now()) == orders.REFUNDED_NOW
    assert fresh(order).state == REFUNDED and fresh(order).refund_reason == orders.MISMATCH_REASON
    assert held_and_sold(order.batch_id) == (0, 0)
    assert len(emulator.refunds(fresh(order).payment_intent_id)) == 1


def test_a_maker_refund_submitted_twice_refunds_once(app, emulator):
    maker = make_maker()
    order = paid_order(emulator, live_batch(edition_size=5, price=4000), make_customer(), 2)

    refunded = refunds.refund_order(order, actor=maker, now=clock.now())
    with pytest.raises(InvalidState):
        refunds.refund_order(order, actor=maker, now=clock.now())  # the second tab

    assert refunded.state == REFUNDED and refunded.refund_id.startswith("re_")
    [refund] = emulator.refunds(refunded.payment_intent_id)
    assert refund["amount"] == 8000
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "order.refunded"))
    assert entry.actor_id == maker.id and entry.order_id == order.id
    assert [u.serial for u in fresh(order).units] == [1, 2]  # serials are never reused
    assert held_and_sold(order.batch_id) == (0, 2)


def test_only_a_paid_order_can_be_refunded(app, emulator):
    order = held_order(live_batch(edition_size=5), make_customer(), 1)
    with pytest.raises(InvalidState):
        refunds.refund_order(order, actor=None, now=clock.now())
    assert fresh(order).state == HELD


def test_a_refund_stripe_did_not_confirm_is_retried_by_the_sweeper_once(app, emulator):
    order, now = unconfirmed_refund(app, emulator)

    pending = fresh(order)
    assert pending.state == REFUNDED and pending.refund_id is None
    assert refunds.retry_refunds(now + timedelta(seconds=5)) == 0  # too soon: maybe in flight
    assert refunds.retry_refunds(now + timedelta(minutes=2)) == 1
    assert refunds.retry_refunds(now + timedelta(minutes=3)) == 0
    assert len(emulator.refunds(pending.payment_intent_id)) == 1
    assert fresh(order).refund_id is not None

"""``POST /stripe/webhook``: real emulator events, signed as Stripe signs them, applied once."""

import json
import time

import pytest
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import Batch, Order, StripeEvent, Unit
from shop.models.order import CANCELLED, EXPIRED, HELD, PAID, REFUNDED
from testkit.factories import make_customer
from tests.support.stripe import (
    deliver,
    fresh,
    held_order,
    live_batch,
    paid_order,
    signature,
    stripe_settings,
    without_retries,
)


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


@pytest.fixture
def order(app, emulator):
    """A held order of 2 units (batch of 5) whose session the customer has just paid."""
    held = held_order(live_batch(edition_size=5, limit=2), make_customer(), 2)
    emulator.complete(held.checkout_session_id)
    return held


def _events() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(StripeEvent))


def _units(order: Order) -> list[int]:
    db.session.rollback()
    return list(db.session.scalars(select(Unit.serial).where(Unit.order_id == order.id)))


def test_a_completed_checkout_marks_the_order_paid_and_records_the_event(client, emulator, order):
    event = emulator.event("checkout.session.completed", order.checkout_session_id)

    response = deliver(client, event)

    assert response.status_code == 200 and response.json["outcome"] == "paid"
    assert fresh(order).state == PAID and _units(order) == [1, 2]
    recorded = db.session.get(StripeEvent, event["id"])
    assert recorded.type == "checkout.session.completed" and recorded.processed_at is not None


def test_a_duplicate_delivery_with_a_fresh_signature_changes_nothing(client, emulator, order):
    event = emulator.event("checkout.session.completed", order.checkout_session_id)
    deliver(client, event)

    again = deliver(client, event, timestamp=int(time.time()) + 1)

    assert again.status_code == 200 and again.json["outcome"] == "duplicate"
    assert _units(order) == [1, 2] and _events() == 1


@pytest.mark.parametrize(
    "case",
    [
        "wrong secret",
        "stale timestamp",
        "future timestamp",
        "no signature",
        "garbled signature",
        "tampered body",
        "signed but not JSON",
        "signed but not an event",
    ],
)
def test_a_webhook_that_cannot_be_trusted_is_refused_and_changes_nothing(
    client, emulator, order, case
):
    payload = json.dumps(emulator.event("checkout.session.completed", order.checkout_session_id))
    now = int(time.time())
    header = {
        "wrong secret": signature(payload, secret="whsec_somebody_else"),
        "stale timestamp": signature(payload, timestamp=now - 301),
        # 30 s past the tolerance: a slow run must not bring a future timestamp inside it
        "future timestamp": signature(payload, timestamp=now + 330),
        "no signature": "",
        "garbled signature": "t=abc, v1=zz",
        "tampered body": signature(payload),
        "signed but not JSON": signature("{not json"),
        "signed but not an event": signature("[1, 2]"),
    }[case]
    body = {
        "tampered body": payload.replace('"amount_total": 5000', '"amount_total": 1'),
        "signed but not JSON": "{not json",
        "signed but not an event": "[1, 2]",
    }.get(case, payload)

    response = client.post(
        "/stripe/webhook",
        data=body.encode(),
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_webhook"
    assert fresh(order).state == HELD and _events() == 0


def test_a_timestamp_a_little_ahead_of_our_clock_is_accepted(client, emulator, order):
    event = emulator.event("checkout.session.completed", order.checkout_session_id)
    response = deliver(client, event, timestamp=int(time.time()) + 60)
    assert response.status_code == 200 and fresh(order).state == PAID


def test_events_arriving_in_any_order_pay_the_order_once(client, emulator, order):
    events = emulator.events()  # completed, payment_intent.succeeded, … as Stripe raised them
    assert {"checkout.session.completed", "payment_intent.succeeded"} <= {e["type"] for e in events}

    outcomes = [deliver(client, e).json["outcome"] for e in reversed(events)]
    outcomes += [deliver(client, e).json["outcome"] for e in events]

    assert outcomes.count("paid") == 1
    assert outcomes[len(events) :] == ["duplicate"] * len(events)
    assert _units(order) == [1, 2]


def test_an_expired_event_releases_the_hold_when_stripe_confirms_it(app, client, emulator):
    held = held_order(live_batch(edition_size=5), make_customer(), 1)
    emulator.expire(held.checkout_session_id)
    event = emulator.event("checkout.session.expired", held.checkout_session_id)

    assert deliver(client, event).json["outcome"] == "released"
    assert fresh(held).state == EXPIRED
    assert db.session.get(Batch, held.batch_id).held == 0


def test_an_expired_event_for_a_session_stripe_still_shows_open_releases_nothing(
    app, client, emulator
):
    held = held_order(live_batch(edition_size=5), make_customer(), 1)
    stale = {
        "id": "evt_stale_expired",
        "object": "event",
        "type": "checkout.session.expired",
        "data": {"object": {"id": held.checkout_session_id, "status": "expired"}},
    }

    assert deliver(client, stale).json["outcome"] == "ignored"
    assert fresh(held).state == HELD


def test_an_expired_event_after_the_payment_went_through_fulfils_instead(client, emulator, order):
    paid_session = emulator.session(order.checkout_session_id)
    out_of_order = {
        "id": "evt_expired_late",
        "object": "event",
        "type": "checkout.session.expired",
        "data": {"object": {**paid_session, "status": "expired"}},
    }

    assert deliver(client, out_of_order).json["outcome"] == "paid"
    assert fresh(order).state == PAID


def test_a_delayed_payment_is_fulfilled_when_it_succeeds(app, client, emulator):
    held = held_order(live_batch(edition_size=5), make_customer(), 1)
    emulator.complete(held.checkout_session_id, payment_status="unpaid")
    completed = emulator.event("checkout.session.completed", held.checkout_session_id)
    assert deliver(client, completed).json["outcome"] == "pending"
    assert fresh(held).state == HELD

    emulator.async_result(held.checkout_session_id, succeeded=True)
    succeeded = emulator.event("checkout.session.async_payment_succeeded")

    assert deliver(client, succeeded).json["outcome"] == "paid"
    assert fresh(held).state == PAID


def test_a_failed_delayed_payment_releases_the_hold(app, client, emulator):
    held = held_order(live_batch(edition_size=5), make_customer(), 1)
    emulator.complete(held.checkout_session_id, payment_status="unpaid")
    emulator.async_result(held.checkout_session_id, succeeded=False)
    failed = emulator.event("checkout.session.async_payment_failed")

    assert deliver(client, failed).json["outcome"] == "released"
    assert fresh(held).state == CANCELLED


def test_a_refund_made_in_the_stripe_dashboard_marks_the_order_refunded(app, client, emulator):
    paid = paid_order(emulator, live_batch(edition_size=5, price=3000), make_customer(), 1)
    stripe_dashboard = emulator.client()
    stripe_dashboard.v1.refunds.create(
        params={"payment_intent": paid.payment_intent_id, "amount": 1000}
    )
    partial = emulator.event("charge.refunded")
    assert deliver(client, partial).json["outcome"] == "ignored"
    assert fresh(paid).state == PAID

    stripe_dashboard.v1.refunds.create(params={"payment_intent": paid.payment_intent_id})
    full = [e for e in emulator.events("charge.refunded") if e["id"] != partial["id"]][-1]

    assert deliver(client, full).json["outcome"] == "refunded"
    refunded = fresh(paid)
    assert refunded.state == REFUNDED and refunded.refund_reason
    assert [u.serial for u in refunded.units] == [1]  # serials stay taken


def test_a_refund_event_naming_another_orders_payment_refunds_only_what_stripe_says(
    app, client, emulator
):
    batch = live_batch(edition_size=5, limit=1)
    refunded, victim = (paid_order(emulator, batch, make_customer()) for _ in range(2))
    emulator.client().v1.refunds.create(params={"payment_intent": refunded.payment_intent_id})
    event = emulator.event("charge.refunded")
    forged = json.loads(json.dumps(event))
    forged["data"]["object"]["payment_intent"] = victim.payment_intent_id

    response = deliver(client, forged)

    assert response.json["outcome"] == "refunded"
    assert fresh(victim).state == PAID
    assert fresh(refunded).state == REFUNDED


def test_stripe_unreachable_mid_fulfilment_answers_503_so_stripe_retries(
    app, client, emulator, order
):
    event = emulator.event("checkout.session.completed", order.checkout_session_id)
    without_retries(app)
    emulator.faults(fail_next=1, fail_status=503, paths=["/v1/checkout/sessions"])

    failed = deliver(client, event)

    assert failed.status_code == 503
    assert fresh(order).state == HELD and _events() == 0
    retried = deliver(client, event)
    assert retried.status_code == 200 and retried.json["outcome"] == "paid"


def test_other_event_types_are_acknowledged_and_recorded(client, emulator, order):
    intent_event = emulator.event("payment_intent.succeeded")
    response = deliver(client, intent_event)
    assert response.status_code == 200 and response.json["outcome"] == "ignored"
    assert _events() == 1 and fresh(order).state == HELD

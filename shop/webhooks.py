"""Stripe's webhook events applied to orders, each exactly once.

The event id is recorded (``orders.claim_event``) in the same transaction as its effects, so a
redelivered or concurrently delivered event changes nothing twice. Event bodies only name the
object: whether a session is paid or expired, and which payment a refunded charge belongs to,
are read back from Stripe. The payment itself is applied by ``orders.fulfil``, the same function
the success page and the sweeper call.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update

from shop import inventory, messages, orders, payments
from shop.errors import PaymentRejected
from shop.extensions import db
from shop.models import Order, StripeEvent
from shop.models.order import CANCELLED, EXPIRED, HELD, PAID, REFUNDED
from shop.payments import WebhookEvent

log = logging.getLogger(__name__)

FULFIL_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
RELEASE_EVENTS = ("checkout.session.expired", "checkout.session.async_payment_failed")
EXTERNAL_REFUND_REASON = "This order was refunded in full."


def handle_event(event: WebhookEvent, *, now: datetime) -> str:
    """Apply one verified webhook event exactly once (its id is recorded with its effects)."""
    if db.session.get(StripeEvent, event.id) is not None:
        db.session.rollback()
        return orders.DUPLICATE
    db.session.rollback()
    object_id = event.object.get("id")
    if not isinstance(object_id, str) or not object_id:
        return orders.record_only(event, now=now, outcome=orders.IGNORED)
    try:
        if event.type in FULFIL_EVENTS:
            return orders.fulfil(object_id, now=now, event=event)
        if event.type in RELEASE_EVENTS:
            return _release_for_event(object_id, now=now, event=event)
        if event.type == "charge.refunded":
            return _record_external_refund(event, now=now)
    except PaymentRejected:  # Stripe doesn't know the object: nothing we can act on
        db.session.rollback()
        log.error("event %s (%s) names %s, which Stripe refuses", event.id, event.type, object_id)
    return orders.record_only(event, now=now, outcome=orders.IGNORED)


def _release_for_event(session_id: str, *, now: datetime, event: WebhookEvent) -> str:
    """Release a hold only when Stripe itself says its session can no longer be paid."""
    order = orders.order_for_session(session_id)
    if order is None or order.state != HELD:
        db.session.rollback()
        return orders.record_only(event, now=now, outcome=orders.IGNORED)
    order_id = order.id
    db.session.rollback()
    session = payments.retrieve_session(session_id)
    if session.is_paid:  # out of order: it was paid after all
        return orders.fulfil(session_id, now=now, event=event)
    failed = session.status == "complete" and event.type.endswith("async_payment_failed")
    if session.status != "expired" and not failed:  # still open: a stale event
        return orders.record_only(event, now=now, outcome=orders.IGNORED)
    if not orders.claim_event(event, now=now):
        db.session.rollback()
        return orders.DUPLICATE
    order = orders.reload(order_id)
    released = order is not None and inventory.release(
        order, EXPIRED if session.status == "expired" else CANCELLED, now=now
    )
    db.session.commit()
    return orders.RELEASED if released else orders.IGNORED


def _record_external_refund(event: WebhookEvent, *, now: datetime) -> str:
    """``charge.refunded``: a paid order whose charge Stripe reports fully refunded (from the
    Dashboard, or our own refund echoing back) is marked refunded.

    Only the charge's id is taken from the event; which payment it belongs to and whether it is
    refunded are read from Stripe, so a body naming another order's payment changes nothing."""
    charge_id = event.object.get("id")
    if not isinstance(charge_id, str):
        return orders.record_only(event, now=now, outcome=orders.IGNORED)
    charge = payments.retrieve_charge(charge_id)
    if not charge.refunded or charge.payment_intent_id is None:  # partial: the order stays paid
        return orders.record_only(event, now=now, outcome=orders.IGNORED)
    if not orders.claim_event(event, now=now):
        db.session.rollback()
        return orders.DUPLICATE
    refunded_ids = list(
        db.session.scalars(
            update(Order)
            .where(Order.payment_intent_id == charge.payment_intent_id, Order.state == PAID)
            .values(state=REFUNDED, refunded_at=now, refund_reason=EXTERNAL_REFUND_REASON)
            .returning(Order.id)
        )
    )
    for order_id in refunded_ids:
        refunded = orders.reload(order_id)
        if refunded is not None:
            messages.order_refunded(refunded)
    changed = len(refunded_ids)
    db.session.commit()
    return orders.REFUNDED_NOW if changed else orders.IGNORED

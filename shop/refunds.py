"""Refunds: a maker's refund of a paid order, and re-issuing refunds Stripe never confirmed.

A refund is claimed on the order first (a compare-and-set on its state, committed) and only then
asked of Stripe with a stable idempotency key, so however often it is retried the customer is
refunded once. Refunds keep the units sold: a serial, once given, is never given to anyone else.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update

from shop import audit, messages, money, payments
from shop.errors import InvalidState, PaymentRejected, PaymentUnavailable
from shop.extensions import db
from shop.models import Order, User
from shop.models.order import PAID, REFUNDED

log = logging.getLogger(__name__)

# An interrupted refund (claimed, but Stripe never answered) is retried by the sweeper after this.
REFUND_RETRY_AFTER = timedelta(seconds=60)
REFUND_RETRY_WINDOW = timedelta(days=3)
MAKER_REFUND_REASON = "The maker refunded this order in full."


def _reload(order_id: int) -> Order | None:
    """The order as the database has it now."""
    return db.session.get(Order, order_id, populate_existing=True)


def finish_refund(order_id: int) -> str:
    """Issue (or re-issue, same key) the Stripe refund of a refunded order whose refund id is
    not recorded yet. Returns "done", "unavailable" (the sweeper retries) or "rejected"."""
    order = _reload(order_id)
    if order is None or order.state != REFUNDED or order.refund_id or not order.payment_intent_id:
        db.session.rollback()
        return "done"
    payment_intent_id, public_id = order.payment_intent_id, order.public_id
    key = _refund_key(order)
    db.session.rollback()
    try:
        refund_id = payments.refund(
            payment_intent_id, idempotency_key=key, order_public_id=public_id
        )
    except PaymentUnavailable:
        log.warning("refund of order %s not confirmed by Stripe yet; will retry", public_id)
        return "unavailable"
    except PaymentRejected as error:
        log.error("Stripe refused the refund of order %s (%s)", public_id, error.code)
        return "rejected"
    recorded = db.session.execute(
        update(Order)
        .where(Order.id == order_id, Order.refund_id.is_(None))
        .values(refund_id=refund_id)
    ).rowcount
    if recorded == 1:
        refunded = _reload(order_id)
        if refunded is not None:
            messages.order_refunded(refunded)  # told once Stripe confirmed it, not before
    db.session.commit()
    return "done"


def _refund_key(order: Order) -> str:
    if order.paid_at is None:  # refunded instead of fulfilled: one refund per session
        return f"refund:session:{order.checkout_session_id}"
    return f"refund:order:{order.public_id}"


def refund_order(
    order: Order, *, actor: User | None, now: datetime, reason: str | None = None
) -> Order:
    """Refund a paid order in full through Stripe, exactly once (two tabs, double clicks).

    The claim is a conditional update paid → refunded, committed with the audit entry before
    Stripe is asked (key ``refund:order:{public_id}``); the second submit finds the order no
    longer paid and gets InvalidState. If Stripe cannot be reached the order stays refunded with
    no refund id and the sweeper re-issues the same refund. The units stay sold: serials are
    never reused.
    """
    claimed = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.state == PAID, Order.payment_intent_id.is_not(None))
        .values(state=REFUNDED, refunded_at=now, refund_reason=reason or MAKER_REFUND_REASON)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        raise InvalidState("Only a paid order can be refunded, and only once.")
    order_id = order.id
    db.session.refresh(order)
    audit.record(
        "order.refunded",
        actor=actor,
        batch=order.batch,
        order=order,
        detail=f"{money.format_money(order.amount, order.currency)} for {order.quantity} "
        f"unit(s): {order.refund_reason}",
    )
    db.session.commit()
    result = finish_refund(order_id)
    if result == "rejected":
        _undo_refund_claim(order_id, actor=actor)
        raise PaymentRejected(
            "Stripe refused this refund (the payment may be disputed or already refunded "
            "elsewhere). The order is still paid."
        )
    order = _reload(order_id)
    assert order is not None
    if result == "unavailable":
        raise PaymentUnavailable(
            "The refund is recorded, but Stripe didn't confirm it yet. It will be retried "
            "automatically — nothing to do."
        )
    return order


def _undo_refund_claim(order_id: int, *, actor: User | None) -> None:
    order = _reload(order_id)
    reverted = db.session.execute(
        update(Order)
        .where(Order.id == order_id, Order.state == REFUNDED, Order.refund_id.is_(None))
        .values(state=PAID, refunded_at=None, refund_reason=None)
    ).rowcount
    if reverted and order is not None:
        audit.record("order.refund_failed", actor=actor, batch=order.batch, order=order)
    db.session.commit()


def retry_refunds(now: datetime, *, limit: int = 50) -> int:
    """Re-issue refunds that were claimed but never confirmed by Stripe (same idempotency key,
    so never twice). Returns how many were confirmed."""
    stuck = list(
        db.session.scalars(
            select(Order.id)
            .where(Order.state == REFUNDED, Order.refund_id.is_(None))
            .where(Order.payment_intent_id.is_not(None))
            .where(Order.refunded_at <= now - REFUND_RETRY_AFTER)
            .where(Order.refunded_at > now - REFUND_RETRY_WINDOW)
            .limit(limit)
        )
    )
    db.session.rollback()
    done = 0
    for order_id in stuck:
        finish_refund(order_id)
        order = _reload(order_id)
        done += bool(order is not None and order.refund_id)
        db.session.rollback()
    return done

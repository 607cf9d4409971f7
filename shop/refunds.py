"""Refunds: a maker's refund of a paid order or of some of its units, and re-issuing refunds
Stripe never confirmed.

A refund is claimed in the database first (a compare-and-set, committed) and only then asked of
Stripe with a stable idempotency key, so however often it is retried the customer is refunded
once. Refunds keep the units sold: a serial, once given, is never given to anyone else; a
refunded unit is *retired* and its certificate says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update

from shop import audit, messages, money, payments
from shop.errors import InvalidInput, InvalidState, PaymentRejected, PaymentUnavailable
from shop.extensions import db
from shop.models import Order, Unit, UnitRefund
from shop.models.order import PAID, REFUNDED

log = logging.getLogger(__name__)

# An interrupted refund (claimed, but Stripe never answered) is retried by the sweeper after this.
REFUND_RETRY_AFTER = timedelta(seconds=60)
REFUND_RETRY_WINDOW = timedelta(days=3)
MAKER_REFUND_REASON = "The maker refunded this order in full."
MAKER_UNITS_REASON = "The maker refunded these units."


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
    order: Order, *, actor: audit.Actor, now: datetime, reason: str | None = None
) -> Order:
    """Refund a paid order in full through Stripe, exactly once (two tabs, double clicks).

    The claim is a conditional update paid → refunded, committed with the audit entry before
    Stripe is asked (key ``refund:order:{public_id}``); the second submit finds the order no
    longer paid and gets InvalidState. If Stripe cannot be reached the order stays refunded with
    no refund id and the sweeper re-issues the same refund. The units stay sold: serials are
    never reused.
    """
    # Lock the order row while it is paid (a no-op update), then look for unit refunds in a
    # statement of its own, so one a moment ago committed is seen: refund_units takes the same
    # lock, and the two never both claim money Stripe has not confirmed yet.
    locked = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.state == PAID, Order.payment_intent_id.is_not(None))
        .values(state=PAID)
    ).rowcount
    if locked != 1:
        db.session.rollback()
        raise InvalidState("Only a paid order can be refunded, and only once.")
    if _unconfirmed_unit_refunds(order.id):
        db.session.rollback()
        raise InvalidState(
            "A refund of some of this order's units is still waiting for Stripe to confirm it. "
            "Try again in a minute."
        )
    db.session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(state=REFUNDED, refunded_at=now, refund_reason=reason or MAKER_REFUND_REASON)
    )
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
    _answer(
        finish_refund(order_id),
        undo=lambda: _undo_refund_claim(order_id, actor=actor),
        kept="The order is still paid.",
    )
    order = _reload(order_id)
    assert order is not None
    return order


def _answer(result: str, *, undo, kept: str) -> None:
    """What the maker hears once the claim is committed and Stripe was asked: nothing when it
    confirmed; a refusal undoes the claim (``kept`` says what stays as it was); an unconfirmed
    refund stays claimed and the sweeper re-issues it under the same key."""
    if result == "rejected":
        undo()
        raise PaymentRejected(
            "Stripe refused this refund (the payment may be disputed or already refunded "
            f"elsewhere). {kept}"
        )
    if result == "unavailable":
        raise PaymentUnavailable(
            "The refund is recorded, but Stripe didn't confirm it yet. It will be retried "
            "automatically — nothing to do."
        )


def _undo_refund_claim(order_id: int, *, actor: audit.Actor) -> None:
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


# --- some units of an order ----------------------------------------------------------------


def units_amount(order: Order, count: int) -> int:
    """What ``count`` of the order's units cost the customer: their price, less their share of
    a discount, plus their share of tax Stripe added on top of the price. Shipping stays (a
    parcel still travels); refunding the whole order returns it."""
    quantity = order.quantity
    discount = order.discount_amount or 0
    tax_on_top = 0
    if order.amount_total is not None:
        tax_on_top = max(
            0, order.amount_total - (order.amount + (order.shipping_amount or 0) - discount)
        )
    return order.unit_price * count - discount * count // quantity + tax_on_top * count // quantity


def refunded_amount(order: Order) -> int:
    """How much of the order was refunded by units (its whole-order refund aside)."""
    return (
        db.session.scalar(
            select(func.coalesce(func.sum(UnitRefund.amount), 0)).where(
                UnitRefund.order_id == order.id
            )
        )
        or 0
    )


def _unconfirmed_unit_refunds(order_id: int) -> int:
    return (
        db.session.scalar(
            select(func.count())
            .select_from(UnitRefund)
            .where(UnitRefund.order_id == order_id, UnitRefund.refund_id.is_(None))
        )
        or 0
    )


def refund_units(
    order: Order,
    serials: Iterable[int],
    *,
    actor: audit.Actor,
    now: datetime,
    reason: str | None = None,
) -> UnitRefund:
    """Refund some numbered units of a paid order, exactly once each.

    The claim is one transaction: the order row is locked while it is paid (a no-op update, so
    a whole-order refund and two tabs queue behind each other), the serials are checked against
    the order, and the units are retired by a conditional update that only takes units not
    retired yet; the refund row and the audit entry commit with it. Stripe is asked afterwards
    for exactly the units' amount under the key ``refund:units:{id}``. Refusing all of the
    remaining units (the whole order instead), unknown serials (InvalidInput) and retired ones
    (InvalidState) changes nothing.
    """
    wanted = sorted(set(serials))
    if not wanted:
        raise InvalidInput("Choose at least one unit to refund.")
    locked = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.state == PAID, Order.payment_intent_id.is_not(None))
        .values(state=PAID)
    ).rowcount
    if locked != 1:
        db.session.rollback()
        raise InvalidState("Only the units of a paid order can be refunded.")
    units = {
        unit.serial: unit
        for unit in db.session.scalars(
            select(Unit).where(Unit.order_id == order.id).execution_options(populate_existing=True)
        )
    }
    unknown = [serial for serial in wanted if serial not in units]
    if unknown:
        db.session.rollback()
        raise InvalidInput(
            f"This order has no unit {_serial_list(unknown)}; choose among its own numbers."
        )
    retired = [serial for serial in wanted if units[serial].refunded_at is not None]
    if retired:
        db.session.rollback()
        raise InvalidState(f"{_serial_list(retired, capital=True)} already refunded.")
    valid = [serial for serial, unit in units.items() if unit.refunded_at is None]
    if len(wanted) == len(valid):
        db.session.rollback()
        raise InvalidInput(
            "That is every unit left on the order: refund the whole order instead, so the "
            "shipping is returned too."
        )
    refund = UnitRefund(
        order_id=order.id,
        quantity=len(wanted),
        amount=units_amount(order, len(wanted)),
        currency=order.currency,
        reason=reason or MAKER_UNITS_REASON,
        created_at=now,
    )
    db.session.add(refund)
    db.session.flush()
    taken = db.session.execute(
        update(Unit)
        .where(Unit.order_id == order.id, Unit.serial.in_(wanted), Unit.refunded_at.is_(None))
        .values(refunded_at=now, unit_refund_id=refund.id)
    ).rowcount
    if taken != len(wanted):  # only if the row lock above were missing
        db.session.rollback()
        raise InvalidState("Some of these units were refunded a moment ago.")
    refund_id = refund.id
    audit.record(
        "order.units_refunded",
        actor=actor,
        batch=order.batch,
        order=order,
        detail=f"{money.format_money(refund.amount, refund.currency)} for "
        f"{_serial_list(wanted)}: {refund.reason}",
    )
    db.session.commit()
    _answer(
        finish_unit_refund(refund_id),
        undo=lambda: _undo_unit_refund(refund_id, actor=actor),
        kept="The units are still the customer's.",
    )
    found = db.session.get(UnitRefund, refund_id, populate_existing=True)
    assert found is not None
    return found


def finish_unit_refund(refund_id: int) -> str:
    """Ask Stripe (again, same key) for a claimed unit refund it has not confirmed. Returns
    "done", "unavailable" (the sweeper retries) or "rejected"."""
    refund = db.session.get(UnitRefund, refund_id, populate_existing=True)
    if refund is None or refund.refund_id or not refund.order.payment_intent_id:
        db.session.rollback()
        return "done"
    intent, public_id, amount = (
        refund.order.payment_intent_id,
        refund.order.public_id,
        refund.amount,
    )
    db.session.rollback()
    try:
        stripe_id = payments.refund(
            intent,
            idempotency_key=f"refund:units:{refund_id}",
            order_public_id=public_id,
            amount=amount,
        )
    except PaymentUnavailable:
        log.warning(
            "unit refund %s of order %s not confirmed yet; will retry", refund_id, public_id
        )
        return "unavailable"
    except PaymentRejected as error:
        log.error(
            "Stripe refused unit refund %s of order %s (%s)", refund_id, public_id, error.code
        )
        return "rejected"
    recorded = db.session.execute(
        update(UnitRefund)
        .where(UnitRefund.id == refund_id, UnitRefund.refund_id.is_(None))
        .values(refund_id=stripe_id)
    ).rowcount
    if recorded == 1:
        messages.units_refunded(db.session.get_one(UnitRefund, refund_id))
    db.session.commit()
    return "done"


def _undo_unit_refund(refund_id: int, *, actor: audit.Actor) -> None:
    """Stripe refused: the units are the customer's again and the claim is gone."""
    refund = db.session.get(UnitRefund, refund_id, populate_existing=True)
    if refund is None or refund.refund_id:
        db.session.rollback()
        return
    order = refund.order
    db.session.execute(
        update(Unit)
        .where(Unit.unit_refund_id == refund_id)
        .values(refunded_at=None, unit_refund_id=None)
    )
    db.session.execute(delete(UnitRefund).where(UnitRefund.id == refund_id))
    audit.record("order.units_refund_failed", actor=actor, batch=order.batch, order=order)
    db.session.commit()


def retry_unit_refunds(now: datetime, *, limit: int = 50) -> int:
    """Re-issue unit refunds claimed but never confirmed by Stripe (same key, so never twice).
    Returns how many were confirmed."""
    stuck = list(
        db.session.scalars(
            select(UnitRefund.id)
            .where(UnitRefund.refund_id.is_(None))
            .where(UnitRefund.created_at <= now - REFUND_RETRY_AFTER)
            .where(UnitRefund.created_at > now - REFUND_RETRY_WINDOW)
            .order_by(UnitRefund.id)
            .limit(limit)
        )
    )
    db.session.rollback()
    return sum(finish_unit_refund(refund_id) == "done" for refund_id in stuck)


def _serial_list(serials: list[int], *, capital: bool = False) -> str:
    names = [f"No. {serial}" for serial in serials]
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    if capital and len(names) > 1:
        return text + " were"
    return text + (" was" if capital else "")

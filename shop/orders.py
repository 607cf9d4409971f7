"""Order lifecycle around payments: checkout, fulfilment and cancelling.

Stripe is reached only through ``shop.payments``; stock changes only through ``shop.inventory``.
Unlike the inventory rules, these functions commit: each one ends its transaction before Stripe
is asked, so no lock and no open transaction is ever held across a network call. Exactly-once
comes from compare-and-set updates on the order's state (inventory's release/rehold/confirm and
the refund claims here and in ``shop.refunds``), the UNIQUE session id, and the
``stripe_events`` primary key written in the same transaction as an event's effects. The
sweeper that releases abandoned holds is ``shop.sweeper``; webhook events are applied by
``shop.webhooks``, which calls :func:`fulfil` and records event ids with :func:`claim_event`.

Refunds keep the units sold: a serial, once given to a customer, is never given to anyone else.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import joinedload

from shop import inventory, messages, payments, refunds, shipping_rates
from shop.errors import (
    DestinationNeeded,
    InvalidInput,
    InvalidState,
    LimitReached,
    PaymentRejected,
    PaymentUnavailable,
    SoldOut,
)
from shop.extensions import db
from shop.models import Batch, Order, StripeEvent, UnrecognisedPayment
from shop.models.order import CANCELLED, EXPIRED, HELD, PAID, REFUNDED
from shop.payments import WebhookEvent

log = logging.getLogger(__name__)

SOLD_OUT_REASON = (
    "The batch sold out before your payment arrived; your payment was refunded in full."
)
MISMATCH_REASON = "Your payment did not match your order, so it was refunded in full."

# What fulfil() and the webhook handlers report.
FULFILLED = "paid"  # this call marked the order paid
ALREADY_PAID = "already_paid"
PENDING = "pending"  # not paid (yet): nothing changed
REFUNDED_NOW = "refunded"  # the order ends refunded (sold out, mismatch, refunded earlier)
RELEASED = "released"
IGNORED = "ignored"  # an event that needs nothing from us (stale, unknown, other types)
DUPLICATE = "duplicate"  # this event id was processed already
UNRECOGNISED = "unrecognised"  # a paid session the shop did not create: recorded, not touched


# --- checkout ------------------------------------------------------------------------------


def continue_checkout(order: Order, *, now: datetime) -> str:
    """Where a customer with a held order goes to pay: the open session, a new one if the last
    one expired, or the success page if it was paid meanwhile.

    A definite refusal releases the hold at once and raises PaymentRejected; a timeout or 5xx
    keeps the hold and raises PaymentUnavailable, and the next call retries with the same
    idempotency key, so the same session comes back.
    """
    if order.state != HELD:
        raise InvalidState("This order is no longer waiting for payment.")
    if order.hold_expires_at is not None and order.hold_expires_at <= now:
        raise InvalidState("Your hold on these units has run out. Please buy them again.")
    if order.ship_country and order.shipping_rate_name is None:
        _quote_shipping(order, now=now)
    elif order.ship_country is None and shipping_rates.rates_for(order.batch):
        # Shipping is priced by country, so Checkout needs the country first. The drop page
        # does not ask (the crowd's buy stays one click, its page one query): the units are
        # held, and the customer is asked now, off the hot path.
        countries = current_app.config.get("SHOP_SHIPPING_COUNTRIES") or []
        raise DestinationNeeded(shipping_rates.destinations(order.batch, countries))
    return _checkout_url(order.id, now=now)


def choose_destination(order: Order, country: str, *, now: datetime) -> None:
    """Set where a held order ships, once, before its first Checkout Session; the country must
    be one the batch can go to (InvalidInput names it otherwise)."""
    if order.state != HELD or (order.hold_expires_at is not None and order.hold_expires_at <= now):
        raise InvalidState("This order is no longer waiting for payment.")
    countries = current_app.config.get("SHOP_SHIPPING_COUNTRIES") or []
    if country not in shipping_rates.destinations(order.batch, countries):
        raise InvalidInput(f"We can't ship this batch to {shipping_rates.country_name(country)}.")
    chosen = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.state == HELD, Order.ship_country.is_(None))
        .values(ship_country=country)
    ).rowcount
    if chosen != 1:
        raise InvalidState("This order's destination is already chosen.")


def _quote_shipping(order: Order, *, now: datetime) -> None:
    """Fix the shipping charge for the order's country before its first Checkout Session, so
    every retry sends Stripe the same parameters. A country no rate covers (only a crafted
    request can choose one) ends the hold with the reason."""
    countries = current_app.config.get("SHOP_SHIPPING_COUNTRIES") or []
    try:
        quote = shipping_rates.quote(order.batch, order.amount, order.ship_country, countries)
    except InvalidInput:
        inventory.release(order, CANCELLED, now=now)
        db.session.commit()
        raise
    db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.state == HELD, Order.shipping_rate_name.is_(None))
        .values(shipping_rate_name=quote.name, shipping_amount=quote.amount)
    )
    db.session.commit()


def _checkout_url(order_id: int, *, now: datetime) -> str:
    for _ in range(3):
        order = reload(order_id, for_checkout=True)
        if order is None or order.state != HELD:
            db.session.rollback()
            raise InvalidState("This order is no longer waiting for payment.")
        known_session = order.checkout_session_id
        request = payments.checkout_request(order, now=now)
        db.session.rollback()  # no transaction is open while Stripe is asked

        if known_session is not None:
            try:
                session = payments.retrieve_session(known_session)
            except PaymentRejected:  # Stripe doesn't know it: start a new attempt
                _next_attempt(order_id, request.attempt, known_session)
                continue
        else:
            try:
                session = payments.create_session(request)
            except PaymentRejected:
                _release_refused(order_id, now=now)
                raise
        if session.status == "open" and session.url:
            if known_session is None and not _store_session(order_id, session.id):
                payments.settle_abandoned(session.id)  # the hold ended meanwhile: close it again
                raise InvalidState("Your hold on these units has run out. Please buy them again.")
            return session.url
        if session.status == "complete":
            return payments.success_url(session.id)
        # Expired (a replayed key can return an old, expired session): next attempt, new key.
        _next_attempt(order_id, request.attempt, known_session)
    raise PaymentUnavailable()


def _store_session(order_id: int, session_id: str) -> bool:
    stored = db.session.execute(
        update(Order)
        .where(Order.id == order_id, Order.state == HELD)
        .where((Order.checkout_session_id.is_(None)) | (Order.checkout_session_id == session_id))
        .values(checkout_session_id=session_id)
    ).rowcount
    db.session.commit()
    return stored == 1


def _next_attempt(order_id: int, attempt: int, session_id: str | None) -> None:
    condition = (
        Order.checkout_session_id.is_(None)
        if session_id is None
        else Order.checkout_session_id == session_id
    )
    db.session.execute(
        update(Order)
        .where(Order.id == order_id, Order.state == HELD, Order.checkout_attempt == attempt)
        .where(condition)
        .values(checkout_attempt=attempt + 1, checkout_session_id=None)
    )
    db.session.commit()


def _release_refused(order_id: int, *, now: datetime) -> None:
    order = reload(order_id)
    if order is not None:
        inventory.release(order, CANCELLED, now=now)
    db.session.commit()


def cancel(order: Order, *, now: datetime) -> str:
    """The customer gives up a held order: expire its session first, then release the units.

    Returns ``"released"``, or the fulfil outcome if the session turned out paid. Raises
    PaymentUnavailable (hold kept) when Stripe cannot be asked.
    """
    if order.state != HELD:
        raise InvalidState("This order is no longer on hold.")
    order_id, session_id = order.id, order.checkout_session_id
    db.session.rollback()
    outcome = payments.settle_abandoned(session_id) if session_id else payments.UNPAYABLE
    if outcome == payments.UNREACHABLE:
        raise PaymentUnavailable(
            "We couldn't reach the payment provider to cancel. Your units are still held — "
            "try again in a moment."
        )
    if outcome == payments.COMPLETE:
        assert session_id is not None
        return fulfil(session_id, now=now)
    order = reload(order_id)
    released = order is not None and inventory.release(order, CANCELLED, now=now)
    db.session.commit()
    return RELEASED if released else IGNORED


# --- fulfilment ----------------------------------------------------------------------------


def settled(order: Order) -> bool:
    """Paid or refunded: the database has the last word on the order, so a page showing it
    never needs to ask Stripe (fulfil would only confirm what is stored). A held order may be
    paid by now, and a released one may still see a payment the shop must honour or refund."""
    return order.state in (PAID, REFUNDED)


def fulfil(session_id: str, *, now: datetime, event: WebhookEvent | None = None) -> str:
    """Paid Checkout Session → paid order with serials, exactly once, however often it is called
    and from wherever (webhook, success page, sweeper), also at the same moment.

    The session is read from Stripe (payloads are not trusted) and checked against the order
    (reference, amount, currency). Only a session stored on one of our orders is ours; any
    other is recorded as unrecognised and left alone (never refunded). A released order whose
    payment arrived anyway is re-held; when its units are gone the payment is refunded and the
    customer is told why. ``event`` is
    recorded in the same transaction as the effect. Raises PaymentUnavailable when Stripe cannot
    be reached (the webhook answers 5xx so Stripe retries).
    """
    db.session.rollback()
    session = payments.retrieve_session(session_id)
    if not session.is_paid:
        return record_only(event, now=now, outcome=PENDING)
    for _ in range(3):
        outcome = _fulfil_once(session, now=now, event=event)
        if outcome is not None:
            return outcome
    raise PaymentUnavailable()


def _fulfil_once(
    session: payments.CheckoutSession, *, now: datetime, event: WebhookEvent | None
) -> str | None:
    """One decision on a locked-in-the-database view of the order; None means "it changed under
    us, decide again"."""
    order = order_for_session(session.id)
    if order is None:
        db.session.rollback()
        return _record_unrecognised(session, now=now, event=event)
    if not claim_event(event, now=now):
        db.session.rollback()
        return DUPLICATE
    if order.state == PAID:
        db.session.commit()
        return ALREADY_PAID
    if order.state == REFUNDED:
        order_id = order.id
        db.session.commit()
        refunds.finish_refund(order_id)
        return REFUNDED_NOW
    mismatch = _mismatch(order, session)
    if mismatch is not None:
        log.error("session %s does not match order %s: %s", session.id, order.public_id, mismatch)
        if order.state == HELD:
            inventory.release(order, CANCELLED, now=now)
        return _refund_released(order, session, MISMATCH_REASON, now=now)
    if order.state in (EXPIRED, CANCELLED):
        try:
            inventory.rehold(order, now=now)
        except (SoldOut, LimitReached):
            return _refund_released(order, session, SOLD_OUT_REASON, now=now)
        except InvalidState:
            db.session.rollback()
            return None
    _record_amounts(order, session)  # before confirm: its lock on the batch lasts to COMMIT
    messages.load_for_receipt(order)
    if inventory.confirm(
        order,
        now=now,
        payment_intent_id=session.payment_intent_id,
        customer_email=session.customer_email,
        shipping=session.shipping,
    ):
        messages.order_paid(order)  # the receipt, committed with the payment
        public_id = order.public_id  # read before the commit expires it (a read of the row)
        db.session.commit()
        log.info("order %s paid (session %s)", public_id, session.id)
        return FULFILLED
    db.session.rollback()
    return None


def _record_amounts(order: Order, session: payments.CheckoutSession) -> None:
    """What Checkout added to the goods, as Stripe computed it: tax, discount, the total."""
    order.tax_amount = session.amount_tax
    order.discount_amount = session.amount_discount
    order.amount_total = session.amount_total
    order.promotion_code = (session.promotion_code or "")[:64] or None
    db.session.flush()


def order_for_session(session_id: str) -> Order | None:
    """The order carrying this Checkout Session, as the database has it now (None: not ours)."""
    return db.session.scalar(
        select(Order)
        .where(Order.checkout_session_id == session_id)
        .execution_options(populate_existing=True)
    )


def _mismatch(order: Order, session: payments.CheckoutSession) -> str | None:
    if order.public_id not in (session.client_reference_id, session.metadata_order) or (
        session.client_reference_id != session.metadata_order
    ):
        return "reference"
    goods = session.amount_subtotal if session.amount_subtotal is not None else session.amount_total
    if goods != order.amount:
        return f"amount {goods} != {order.amount}"
    if session.amount_shipping != order.shipping_amount:
        return f"shipping {session.amount_shipping} != {order.shipping_amount}"
    if (session.currency or "").lower() != order.currency.lower():
        return f"currency {session.currency} != {order.currency}"
    return None


def _refund_released(
    order: Order, session: payments.CheckoutSession, reason: str, *, now: datetime
) -> str:
    """A paid session whose order cannot have its units: claim the refund on the order
    (released → refunded, once), commit, then ask Stripe (key ``refund:session:{id}``)."""
    claimed = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.state.in_((EXPIRED, CANCELLED)))
        .values(
            state=REFUNDED,
            refund_reason=reason,
            refunded_at=now,
            payment_intent_id=session.payment_intent_id,
            customer_email=session.customer_email or Order.customer_email,
        )
    ).rowcount
    order_id, public_id = order.id, order.public_id
    db.session.commit()
    if claimed != 1:
        return _current_outcome(order_id)
    log.warning("order %s refunded instead of fulfilled: %s", public_id, reason)
    refunds.finish_refund(order_id)
    return REFUNDED_NOW


def _record_unrecognised(
    session: payments.CheckoutSession, *, now: datetime, event: WebhookEvent | None
) -> str:
    """A paid session that no order of ours carries was not created by this shop (another
    integration on the account, a Payment Link, a staging copy on the same keys): it is someone
    else's money. Record it for the operator (``flask shop unrecognised-payments``) and leave it
    alone — never refund, never fulfil. The rule and its reasons: SECURITY.md, "Payments the
    shop does not recognise"."""
    log.warning(
        "paid Checkout Session %s was not created by this shop (reference %r, metadata order "
        "%r, %s %s): recorded as unrecognised, not touched",
        session.id,
        session.client_reference_id,
        session.metadata_order,
        session.amount_total,
        session.currency,
    )
    _insert_once(
        UnrecognisedPayment,
        {
            "session_id": session.id[:255],
            "event_id": event.id if event is not None else None,
            "payment_intent_id": _clipped(session.payment_intent_id, 255),
            "amount_total": session.amount_total,
            "currency": _clipped(session.currency, 3),
            "client_reference_id": _clipped(session.client_reference_id, 255),
            "metadata_order": _clipped(session.metadata_order, 255),
            "recorded_at": now,
        },
        key="session_id",
    )
    if not claim_event(event, now=now):
        db.session.rollback()
        return DUPLICATE
    db.session.commit()
    return UNRECOGNISED


def _clipped(value: str | None, length: int) -> str | None:
    return value[:length] if isinstance(value, str) else None


def _current_outcome(order_id: int) -> str | None:
    order = reload(order_id)
    state = order.state if order is not None else None
    db.session.rollback()
    if state == PAID:
        return ALREADY_PAID
    if state == REFUNDED:
        return REFUNDED_NOW
    return None


# --- the event ledger ----------------------------------------------------------------------


def record_only(event: WebhookEvent | None, *, now: datetime, outcome: str) -> str:
    """Commit just the event's id (it needed nothing else) and answer ``outcome``."""
    if event is None:
        return outcome
    if not claim_event(event, now=now):
        db.session.rollback()
        return DUPLICATE
    db.session.commit()
    return outcome


def claim_event(event: WebhookEvent | None, *, now: datetime) -> bool:
    """Record the event id in the current transaction; False when it is already recorded (a
    concurrent duplicate committed first). INSERT … ON CONFLICT DO NOTHING on both databases."""
    if event is None:
        return True
    return _insert_once(
        StripeEvent,
        {"id": event.id, "type": event.type[:80], "received_at": now, "processed_at": now},
        key="id",
    )


def _insert_once(model: type, values: dict, *, key: str) -> bool:
    """INSERT … ON CONFLICT (key) DO NOTHING on both databases; True when this call inserted."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(model)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[key])
        .returning(getattr(model, key))
    )
    return db.session.execute(statement).first() is not None


def reload(order_id: int, *, for_checkout: bool = False) -> Order | None:
    """The order as the database has it now; ``for_checkout`` with the batch, product and
    customer a Checkout Session is built from, in the same query."""
    if not for_checkout:
        return db.session.get(Order, order_id, populate_existing=True)
    return db.session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .options(joinedload(Order.batch).joinedload(Batch.product), joinedload(Order.customer))
        .execution_options(populate_existing=True)
    )

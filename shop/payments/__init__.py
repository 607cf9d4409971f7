"""Everything Stripe: the only package that imports ``stripe``.

The Stripe-facing half of the order lifecycle. ``shop.orders`` decides what happens to an order;
this package asks Stripe and answers in plain data:

- :func:`checkout_request` reads what a Checkout Session is built from (call it, then end the
  transaction, then :func:`create_session`);
- :func:`settle_abandoned` decides what an abandoned session's hold becomes;
- the Stripe calls themselves live in ``gateway`` and are re-exported here under their one
  name: :func:`create_session`, :func:`retrieve_session`, :func:`refund`,
  :func:`retrieve_charge`, :func:`verify_webhook`.

Errors are ``PaymentRejected`` (Stripe definitely refused) or ``PaymentUnavailable`` (timeout,
connection, 5xx: the outcome is unknown, retry with the same idempotency key).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import current_app

from shop.errors import PaymentRejected, PaymentUnavailable
from shop.models import Order
from shop.models.user import TAX_OFF
from shop.payments import gateway
from shop.payments.gateway import (
    Charge,
    CheckoutRequest,
    CheckoutSession,
    InvalidWebhook,
    WebhookEvent,
    create_session,
    refund,
    retrieve_charge,
    retrieve_session,
    stripe_code,
    verify_webhook,
)

# Stripe refuses expires_at under 30 minutes after creation; a minute of margin absorbs skew.
SESSION_LIFETIME = timedelta(minutes=31)
# ... and over 24 hours after it: a personal hold (a draw's win) may last longer than that.
SESSION_LONGEST = timedelta(hours=23, minutes=30)
SESSION_STEP = timedelta(hours=22)

UNPAYABLE = "unpayable"
COMPLETE = "complete"
UNREACHABLE = "unreachable"


def checkout_request(order: Order, *, now: datetime) -> CheckoutRequest:
    """What the order's Checkout Session is built from, read from the database.

    ``expires_at`` is anchored on the end of the hold, not on "now" (:func:`session_expiry`):
    every retry of one attempt sends identical parameters (so Stripe's idempotency layer returns
    the same session instead of an ``idempotency_error``).
    """
    expires_at, expiry_step = session_expiry(order.hold_expires_at, now)
    batch = order.batch
    assert order.hold_expires_at is not None
    tax_mode = batch.product.maker.tax_mode
    shop_countries = current_app.config.get("SHOP_SHIPPING_COUNTRIES") or []
    return CheckoutRequest(
        order_public_id=order.public_id,
        attempt=order.checkout_attempt,
        product_name=batch.product.name,
        batch_number=batch.number,
        description=batch.summary or "",
        unit_price=order.unit_price,
        quantity=order.quantity,
        currency=order.currency,
        customer_email=order.customer.email,
        expires_at=expires_at,
        expiry_step=expiry_step,
        # Concatenated, never built with session_id=...: the braces must reach Stripe literally.
        success_url=shop_url("checkout.success") + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=shop_url("checkout.cancel", public_id=order.public_id),
        ship_countries=(order.ship_country,) if order.ship_country else tuple(shop_countries),
        shipping_name=order.shipping_rate_name,
        shipping_amount=order.shipping_amount,
        tax_behavior=None if tax_mode == TAX_OFF else tax_mode,
        tax_code=batch.tax_code,
        allow_promotion_codes=bool(batch.drop and batch.drop.allow_promotion_codes),
    )


def session_expiry(hold_expires_at: datetime, now: datetime) -> tuple[datetime, int]:
    """When the session expires, and how many steps it was moved back: 31 minutes after the
    hold ends, so it outlives the hold above Stripe's 30-minute minimum; for a hold ending more
    than a day away (Stripe's maximum), that moment moved back by whole steps of 22 hours until
    it is at most 23.5 hours away. The step is part of the idempotency key, so a retry that
    crosses into the next step asks for a new session instead of meeting Stripe's
    ``idempotency_error``; a session that lapses before its hold only means a new attempt."""
    expires_at = hold_expires_at + SESSION_LIFETIME
    if expires_at - now <= SESSION_LONGEST:
        return expires_at, 0
    steps = math.ceil((expires_at - now - SESSION_LONGEST) / SESSION_STEP)
    return expires_at - SESSION_STEP * steps, steps


def shop_url(endpoint: str, **values: object) -> str:
    """An absolute URL on ``SHOP_BASE_URL`` (never the request's Host), with or without a
    request: Stripe sends customers back here."""
    base = urlsplit(current_app.config["SHOP_BASE_URL"])
    adapter = current_app.url_map.bind(
        base.netloc, script_name=base.path.rstrip("/") or "/", url_scheme=base.scheme or "https"
    )
    return adapter.build(endpoint, values, force_external=True)


def success_url(session_id: str) -> str:
    return shop_url("checkout.success", session_id=session_id)


def settle_abandoned(session_id: str) -> str:
    """Ask Stripe to make an abandoned session unpayable.

    Returns ``"unpayable"`` (expired: release the stock), ``"complete"`` (paid or paying: fulfil
    instead) or ``"unreachable"`` (keep the hold and try again next pass). The expire call is the
    authority; when it is refused the session is read back and its status decides.
    """
    try:
        gateway.expire_session(session_id)
        return UNPAYABLE
    except PaymentUnavailable:
        return UNREACHABLE
    except PaymentRejected as refused:
        if stripe_code(refused) == "resource_missing":
            return UNPAYABLE  # Stripe has no such session: nobody can pay it
    try:
        session = gateway.retrieve_session(session_id)
    except (PaymentUnavailable, PaymentRejected):
        return UNREACHABLE
    if session.status == "expired":
        return UNPAYABLE
    if session.status == "complete":
        return COMPLETE
    return UNREACHABLE  # still open although expire was refused: ask again next pass


__all__ = [
    "COMPLETE",
    "UNPAYABLE",
    "UNREACHABLE",
    "Charge",
    "CheckoutRequest",
    "CheckoutSession",
    "InvalidWebhook",
    "WebhookEvent",
    "checkout_request",
    "create_session",
    "refund",
    "retrieve_charge",
    "retrieve_session",
    "settle_abandoned",
    "shop_url",
    "success_url",
    "verify_webhook",
]

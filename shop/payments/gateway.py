"""The one Stripe client and the few calls the shop makes through it.

Everything here returns plain data (``CheckoutSession``, ``WebhookEvent``) and raises only our
domain errors, mapped in one place (:func:`_translated`):

- ``PaymentRejected``: Stripe definitely said no (a 4xx). Retrying the same request won't help.
- ``PaymentUnavailable``: a timeout, a connection failure, a 409 or a 5xx. The outcome is unknown;
  retry later with the same idempotency key.

The client is built lazily, once per app (``create_app`` does no I/O), with explicit timeouts and
retries; ``STRIPE_API_BASE`` points it at the local emulator.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import stripe
from flask import Flask, current_app

from shop import metrics
from shop.errors import PaymentRejected, PaymentUnavailable, ShopError

log = logging.getLogger(__name__)

EXTENSION_KEY = "shop.payments.stripe_client"
CONNECT_TIMEOUT = 2.0  # seconds; settings STRIPE_CONNECT_TIMEOUT / STRIPE_READ_TIMEOUT override
READ_TIMEOUT = 5.0
MAX_NETWORK_RETRIES = 2  # StripeClient makes none unless told (docs/STRIPE.md §7)
WEBHOOK_TOLERANCE = 300  # seconds, either side of now

_build_lock = threading.Lock()


class InvalidWebhook(ShopError):
    """A webhook whose signature, timestamp or body we cannot trust: 400, nothing changes."""

    status = 400
    code = "invalid_webhook"
    message = "The webhook could not be verified."


@dataclass(frozen=True)
class CheckoutSession:
    """What the shop reads from a Checkout Session, fetched from Stripe (never from a payload)."""

    id: str
    status: str  # open | complete | expired
    payment_status: str  # paid | unpaid | no_payment_required
    url: str | None = None
    amount_total: int | None = None
    currency: str | None = None
    client_reference_id: str | None = None
    metadata_order: str | None = None
    payment_intent_id: str | None = None
    customer_email: str | None = None
    shipping: dict | None = None
    amount_subtotal: int | None = None
    amount_shipping: int = 0
    amount_tax: int = 0
    amount_discount: int = 0
    promotion_code: str | None = None  # the code the customer typed, if any

    @property
    def is_paid(self) -> bool:
        return self.status == "complete" and self.payment_status == "paid"


@dataclass(frozen=True)
class Charge:
    """What the shop reads from a charge, fetched from Stripe (a refund event's body is not
    trusted: its payment intent could name anyone's order)."""

    id: str
    payment_intent_id: str | None
    refunded: bool  # fully refunded


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    object: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CheckoutRequest:
    """Everything a Checkout Session is built from, read from the database before any Stripe call
    (so no transaction is open while Stripe is asked)."""

    order_public_id: str
    attempt: int
    product_name: str
    batch_number: int
    description: str
    unit_price: int
    quantity: int
    currency: str
    customer_email: str
    expires_at: datetime
    success_url: str
    cancel_url: str
    ship_countries: tuple[str, ...] = ()
    shipping_name: str | None = None  # one fixed rate, quoted for the order's country
    shipping_amount: int = 0
    tax_behavior: str | None = None  # "exclusive" / "inclusive" with Stripe Tax, else None
    tax_code: str | None = None
    allow_promotion_codes: bool = False
    expiry_step: int = 0  # a long hold's session ends this many 22-hour steps before it

    @property
    def idempotency_key(self) -> str:
        step = f":{self.expiry_step}" if self.expiry_step else ""
        return f"checkout:{self.order_public_id}:{self.attempt}{step}"


# --- the client ----------------------------------------------------------------------------


def client(app: Flask | None = None) -> stripe.StripeClient:
    """The app's StripeClient, built on first use (thread-safe) and cached in ``app.extensions``."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    found = app.extensions.get(EXTENSION_KEY)
    if found is None:
        with _build_lock:
            found = app.extensions.get(EXTENSION_KEY)
            if found is None:
                found = _build(app.config)
                app.extensions[EXTENSION_KEY] = found
    return found[0]


def _build(config: Any) -> tuple[stripe.StripeClient, stripe.RequestsClient]:
    api_base = config.get("STRIPE_API_BASE")
    http_client = stripe.RequestsClient(
        timeout=(
            float(config.get("STRIPE_CONNECT_TIMEOUT", CONNECT_TIMEOUT)),
            float(config.get("STRIPE_READ_TIMEOUT", READ_TIMEOUT)),
        )
    )
    stripe_client = stripe.StripeClient(
        config.get("STRIPE_SECRET_KEY"),
        base_addresses={"api": api_base.rstrip("/")} if api_base else {},
        http_client=http_client,
        max_network_retries=int(config.get("STRIPE_MAX_NETWORK_RETRIES", MAX_NETWORK_RETRIES)),
    )
    return stripe_client, http_client


def close(app: Flask) -> None:
    """Forget the app's client and close its pooled connection in this thread (tests, shutdown)."""
    found = app.extensions.pop(EXTENSION_KEY, None)
    if found is not None:
        found[1].close()


# --- error mapping -------------------------------------------------------------------------


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """Stripe's exceptions → PaymentRejected (definite 4xx) or PaymentUnavailable (unknown);
    every call counted and timed by operation and outcome (``shop.metrics``)."""
    started, outcome = time.perf_counter(), "error"
    try:
        yield
        outcome = "ok"
    except stripe.StripeError as error:
        status = error.http_status
        transient = isinstance(error, stripe.APIConnectionError | stripe.RateLimitError) or (
            isinstance(error, stripe.APIError) or status is None or status >= 500 or status == 409
        )
        log.warning(
            "stripe %s failed: %s %s (status %s, code %s, request %s)",
            action,
            type(error).__name__,
            error.user_message or "",
            status,
            error.code,
            error.request_id,
        )
        outcome = "unavailable" if transient else "rejected"
        if transient:
            raise PaymentUnavailable() from error
        rejected = PaymentRejected()
        rejected.stripe_code = error.code  # type: ignore[attr-defined]
        rejected.http_status = status  # type: ignore[attr-defined]
        raise rejected from error
    finally:
        metrics.stripe_call(action, outcome, time.perf_counter() - started)


def stripe_code(error: ShopError) -> str | None:
    """The Stripe error code behind a PaymentRejected (``resource_missing`` …), if any."""
    return getattr(error, "stripe_code", None)


# --- Checkout Sessions ---------------------------------------------------------------------


def session_params(request: CheckoutRequest) -> dict:
    """The create-params of a one-line, card-only Checkout Session; prices come from our DB.

    Shipping is at most one fixed rate (the one quoted for the order's country, which is then
    the only country Checkout collects); Stripe Tax and promotion codes are the maker's choice.
    """
    currency = request.currency.lower()
    product_data: dict[str, Any] = {
        "name": f"{request.product_name} — Batch No. {request.batch_number}",
        "metadata": {"order": request.order_public_id},
    }
    if request.description:
        product_data["description"] = request.description[:1000]
    price_data: dict[str, Any] = {
        "currency": currency,
        "unit_amount": request.unit_price,
        "product_data": product_data,
    }
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [{"price_data": price_data, "quantity": request.quantity}],
        "client_reference_id": request.order_public_id,
        "metadata": {"order": request.order_public_id},
        "payment_intent_data": {"metadata": {"order": request.order_public_id}},
        "customer_email": request.customer_email,
        "expires_at": int(request.expires_at.timestamp()),
        "allowed_payment_method_types": ["card"],
        "success_url": request.success_url,
        "cancel_url": request.cancel_url,
    }
    if request.ship_countries:
        params["shipping_address_collection"] = {"allowed_countries": list(request.ship_countries)}
    if request.shipping_name is not None:
        rate: dict[str, Any] = {
            "display_name": request.shipping_name,
            "type": "fixed_amount",
            "fixed_amount": {"amount": request.shipping_amount, "currency": currency},
        }
        if request.tax_behavior:
            rate["tax_behavior"] = request.tax_behavior
        params["shipping_options"] = [{"shipping_rate_data": rate}]
    if request.tax_behavior:
        params["automatic_tax"] = {"enabled": True}
        price_data["tax_behavior"] = request.tax_behavior
        if request.tax_code:
            product_data["tax_code"] = request.tax_code
    if request.allow_promotion_codes:
        params["allow_promotion_codes"] = True
    return params


def create_session(request: CheckoutRequest) -> CheckoutSession:
    """Create (or, for a repeated idempotency key, get back) the session for one attempt."""
    with _translated("checkout.sessions.create"):
        session = client().v1.checkout.sessions.create(
            params=session_params(request),  # type: ignore[arg-type]
            options={"idempotency_key": request.idempotency_key},
        )
    return _session_facts(session)


def retrieve_session(session_id: str) -> CheckoutSession:
    with _translated("checkout.sessions.retrieve"):
        session = client().v1.checkout.sessions.retrieve(
            session_id, params={"expand": ["discounts.promotion_code"]}
        )
    return _session_facts(session)


def expire_session(session_id: str) -> CheckoutSession:
    """Make an open session unpayable. PaymentRejected if it is not open any more."""
    with _translated("checkout.sessions.expire"):
        session = client().v1.checkout.sessions.expire(session_id)
    return _session_facts(session)


def _session_facts(session: Any) -> CheckoutSession:
    data = session.to_dict()
    details = data.get("customer_details") or {}
    totals = data.get("total_details") or {}
    collected = data.get("collected_information") or {}
    return CheckoutSession(
        id=data["id"],
        status=data.get("status") or "open",
        payment_status=data.get("payment_status") or "unpaid",
        url=data.get("url"),
        amount_total=data.get("amount_total"),
        currency=data.get("currency"),
        client_reference_id=data.get("client_reference_id"),
        metadata_order=(data.get("metadata") or {}).get("order"),
        payment_intent_id=_id_of(data.get("payment_intent")),
        customer_email=details.get("email"),
        shipping=collected.get("shipping_details"),
        amount_subtotal=data.get("amount_subtotal"),
        amount_shipping=totals.get("amount_shipping") or 0,
        amount_tax=totals.get("amount_tax") or 0,
        amount_discount=totals.get("amount_discount") or 0,
        promotion_code=_promotion_code(data.get("discounts") or []),
    )


def _promotion_code(discounts: list) -> str | None:
    """The code text of the session's promotion code (expanded), else its id."""
    for discount in discounts:
        code = discount.get("promotion_code")
        if isinstance(code, dict):
            return code.get("code") or code.get("id")
        if code:
            return code
    return None


def _id_of(reference: Any) -> str | None:
    """An expandable reference's id: the string itself, or the expanded object's ``id``."""
    if isinstance(reference, dict):
        reference = reference.get("id")
    return reference if isinstance(reference, str) else None


# --- refunds and charges -------------------------------------------------------------------


def refund(
    payment_intent_id: str,
    *,
    idempotency_key: str,
    order_public_id: str,
    amount: int | None = None,
) -> str:
    """Refund a payment — what is left of it, or ``amount`` of it — and return the refund's id.

    The key makes a repeated call return the same refund; a payment that is already refunded
    in full (from the Dashboard, say) returns that refund instead of failing, unless this was a
    refund of part of it, which then really was refused.
    """
    params: dict = {"payment_intent": payment_intent_id, "metadata": {"order": order_public_id}}
    if amount is not None:
        params["amount"] = amount
    try:
        with _translated("refunds.create"):
            created = client().v1.refunds.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return created.id
    except PaymentRejected as error:
        if amount is not None or stripe_code(error) != "charge_already_refunded":
            raise
    with _translated("refunds.list"):
        found = client().v1.refunds.list(params={"payment_intent": payment_intent_id, "limit": 1})
    if not found.data:
        raise PaymentRejected()
    return found.data[0].id


def retrieve_charge(charge_id: str) -> Charge:
    with _translated("charges.retrieve"):
        charge = client().v1.charges.retrieve(charge_id)
    data = charge.to_dict()
    return Charge(
        id=data["id"],
        payment_intent_id=_id_of(data.get("payment_intent")),
        refunded=bool(data.get("refunded")),
    )


# --- webhooks ------------------------------------------------------------------------------

_TIMESTAMP = re.compile(r"(?:^|,)t=(\d{1,12})(?:,|$)")


def verify_webhook(payload: bytes, signature: str | None, *, now: datetime) -> WebhookEvent:
    """A signed, fresh event or InvalidWebhook.

    The SDK rejects bad signatures and timestamps older than the tolerance; it accepts any
    timestamp in the future, so those are refused here too (a captured delivery must not stay
    replayable).
    """
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    try:
        event = client().construct_event(payload, signature, secret, tolerance=WEBHOOK_TOLERANCE)
        data = event.to_dict()
    except stripe.SignatureVerificationError as error:
        raise InvalidWebhook(f"Signature check failed: {error.user_message or error}") from None
    except (ValueError, TypeError, KeyError, AttributeError):
        raise InvalidWebhook("The webhook body is not a Stripe event.") from None
    match = _TIMESTAMP.search(signature or "")
    if match is None or int(match.group(1)) > now.timestamp() + WEBHOOK_TOLERANCE:
        raise InvalidWebhook("The webhook's timestamp is in the future.")
    event_id, event_type = data.get("id"), data.get("type")
    obj = (data.get("data") or {}).get("object") if isinstance(data.get("data"), dict) else None
    if not isinstance(event_id, str) or not event_id or len(event_id) > 255:
        raise InvalidWebhook("The event has no id.")
    if not isinstance(event_type, str) or not isinstance(obj, dict):
        raise InvalidWebhook("The event has no type or object.")
    return WebhookEvent(id=event_id, type=event_type, object=obj)

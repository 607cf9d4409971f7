"""A local Stripe emulator for Small Batch: Checkout Sessions, refunds, events and webhooks.

It speaks the part of Stripe's HTTP API the shop uses (contract: ``docs/STRIPE.md``), so the
official ``stripe`` library talks to it unchanged::

    client = stripe.StripeClient(
        "sk_test_anything",
        base_addresses={"api": emulator.url},
        max_network_retries=2,
        http_client=stripe.RequestsClient(timeout=(2, 5)),
    )

Running it
----------
``python -m stripe_emulator --host 127.0.0.1 --port 12111 --webhook-url URL --webhook-secret
whsec_… [--public-url http://127.0.0.1:12111]`` serves it with a threaded server.
In-process: ``serve_in_thread(port=0, **create_app_kwargs) -> RunningEmulator`` (``.url``,
``.app``, ``.state``, ``.stop()``, usable with ``with``), or ``create_app(...)`` for the bare
WSGI app (its :class:`EmulatorState` is ``get_state(app)``).

API (``/v1``, bearer auth with a ``sk_test_…`` key, bracket-encoded forms, JSON replies)
----------------------------------------------------------------------------------------
``POST/GET /v1/checkout/sessions``, ``GET /v1/checkout/sessions/{id}`` (``expand[]``:
``line_items``, ``payment_intent``, ``payment_intent.latest_charge``, …),
``GET /v1/checkout/sessions/{id}/line_items``, ``POST /v1/checkout/sessions/{id}/expire``,
``GET /v1/payment_intents/{id}``, ``GET /v1/charges/{id}``, ``POST/GET /v1/refunds``,
``GET /v1/refunds/{id}``, ``GET /v1/events``, ``GET /v1/events/{id}``, ``POST /v1/coupons``,
``GET /v1/coupons/{id}``, ``POST/GET /v1/promotion_codes``, ``GET /v1/promotion_codes/{id}``,
``POST /v1/shipping_rates``, ``GET /v1/shipping_rates/{id}``.

Commerce: ``shipping_options`` (up to 5 fixed-amount rates, by id or ``shipping_rate_data`` with
``delivery_estimate``; the first is selected until the customer picks another),
``automatic_tax`` (fixed test rates per country, :mod:`stripe_emulator.pricing`; status
``requires_location_inputs`` until an address is known), ``allow_promotion_codes`` or
``discounts=[{promotion_code|coupon}]``; amounts land in ``amount_total``, ``total_details``
(``breakdown`` when expanded), ``shipping_cost`` and the line items, as on Stripe.
Parameters are checked against stripe-python's typed params (unknown → ``parameter_unknown``,
missing → ``parameter_missing``) plus Stripe's conditional rules. ``Idempotency-Key`` replays the
saved response for 24 h of emulator time (``Idempotent-Replayed: true``); other parameters or
another endpoint → 400 ``idempotency_error``; a key still in flight → 409. Only
``mode=payment`` and ``ui_mode=hosted_page`` with ``price_data`` line items are supported.

Hosted page
-----------
``session.url`` is ``<public base>/checkout/{id}``. Card ``4242 4242 4242 4242`` pays (303 to
``success_url`` with ``{CHECKOUT_SESSION_ID}`` replaced); ``4000 0000 0000 0002`` is declined
(422, session stays open); any card starting ``4000 0025`` completes the session ``unpaid``
until an async result is posted. See :mod:`stripe_emulator.cards`.

Control API (``/_emulator``, JSON, no auth)
-------------------------------------------
``GET  /_emulator/health``
    ``{"ok": true, "now": …}`` — readiness probe.
``POST /_emulator/sessions/{id}/complete``
    ``{"payment_status": "paid"|"unpaid", "email": str, "card": str, "name": str,
    "shipping_address": {line1, line2, city, postal_code, state, country},
    "shipping_rate": "shr_…", "promotion_code": "CODE"}`` (all optional) — pay an open session
    as the customer would; returns the session. A declining card → 402; a rate the session
    does not offer or a code that does not apply → 400 (the session stays open).
``POST /_emulator/sessions/{id}/async_result``
    ``{"succeeded": true|false}`` — settle a ``complete``/``unpaid`` session: sends
    ``checkout.session.async_payment_succeeded`` or ``…_failed``.
``POST /_emulator/sessions/{id}/expire``
    expire an open session without auth (same rules and event as the API call).
``GET  /_emulator/clock`` / ``POST /_emulator/clock/advance`` ``{"seconds": N}``
    read or move emulator time; advancing expires due sessions (and sends their events) and
    returns ``{"now", "offset", "expired": [ids]}``.
``GET/POST /_emulator/faults``
    ``{"delay_seconds": float, "fail_next": N, "fail_status": 500, "timeout_next": N,
    "hang_seconds": 10.0, "paths": ["/v1/refunds", …] | null}`` — each POST replaces the
    whole fault configuration. ``fail_next`` answers the next N matching ``/v1`` requests with
    ``fail_status`` (``api_error``, ``Stripe-Should-Retry: true``, not saved under the
    idempotency key). ``timeout_next`` makes the next N requests sleep ``hang_seconds`` before
    they are processed (as a request that reached Stripe slowly). ``delay_seconds`` slows every
    matching request after its idempotency key is claimed (so a concurrent retry sees 409).
``GET/POST /_emulator/webhooks``
    ``{"url", "secret", "duplicate": bool, "out_of_order": bool, "delay_seconds": float,
    "fail_first": N, "max_attempts": N, "retry_seconds": float, "timeout_seconds": float,
    "reorder_window_seconds": float}`` — change only the fields given (see
    :mod:`stripe_emulator.webhooks`). Retries wait ``retry_seconds * 2**(attempt-1)``.
``POST /_emulator/webhooks/flush``
    ``{"timeout": 10}`` — wait until no delivery is queued, held or in flight;
    returns ``{"flushed": bool, "pending": N}``.
``GET  /_emulator/deliveries[?event=evt_…]``
    ``{"data": [{event_id, event_type, attempt, url, status, ok, error, at, duration_ms}]}``.
``GET  /_emulator/requests[?path=/v1/checkout/sessions][&after=N]``
    ``{"data": [{seq, method, path, at}], "total": N}`` — every ``/v1`` request received (the
    latest 10,000), numbered from 1 since the reset, oldest first, logged as it arrives (before
    faults, auth or validation); optionally only those whose path starts with ``path``, or
    numbered above ``after``: what the shop asked Stripe, for tests to count.
``POST /_emulator/events/{id}/resend``
    queue one more delivery of a stored event.
``POST /_emulator/reset``
    forget all objects, events, keys, faults, deliveries and logged requests; restore webhook
    settings and clock.

Events carry ``api_version`` ``2026-10-28.endive`` and a snapshot in ``data.object``:
``checkout.session.completed|expired|async_payment_succeeded|async_payment_failed``,
``payment_intent.succeeded|processing|payment_failed``, ``charge.refunded``, ``refund.created``.
Webhooks are signed ``t=…,v1=…,v0=…`` with the whole ``whsec_…`` secret as HMAC key, so
``stripe.Webhook.construct_event`` verifies them.
"""

from stripe_emulator.app import create_app, get_state
from stripe_emulator.clock import Clock
from stripe_emulator.objects import API_VERSION
from stripe_emulator.server import RunningEmulator, serve_in_thread
from stripe_emulator.state import EmulatorState

__all__ = [
    "API_VERSION",
    "Clock",
    "EmulatorState",
    "RunningEmulator",
    "create_app",
    "get_state",
    "serve_in_thread",
]

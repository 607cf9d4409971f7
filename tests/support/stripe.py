"""Stripe in tests: the real emulator on a real socket, and the settings that point the app at it.

Its fixtures are registered for every test (``pytest_plugins`` in ``tests/conftest.py``):

- ``emulator_server`` (session scope): one ``stripe_emulator`` serving HTTP on a free port for
  the whole run (one per xdist worker), started on first use. It sends no webhooks by default.
- ``emulator`` (function scope): an :class:`Emulator` handle on that server, reset before and
  after each test (objects, events, idempotency keys, faults, clock, webhook settings).

Point the ``app`` fixture at it by overriding ``app_overrides`` in your module::

    @pytest.fixture
    def app_overrides(emulator):
        return stripe_settings(emulator)  # or {**stripe_settings(emulator), "SHOP_…": …}

A shop started as a subprocess gets the same through :func:`stripe_environment`.

Webhooks with the in-process test client: the emulator cannot reach ``app.test_client()``, so
take the real events it raised (:meth:`Emulator.event`, :meth:`Emulator.events`) and
:func:`deliver` them, signed with Stripe's scheme, to ``/stripe/webhook``. For a shop on a real
socket (gunicorn, a threaded server), let the emulator deliver:
``emulator.webhooks(url=f"{server.url}/stripe/webhook")``.

Data: :func:`live_batch` (live by the real clock, as views see it), :func:`held_order` (a hold
with its Checkout Session), :func:`paid_order` (paid at the emulator and fulfilled);
:func:`fresh` and :func:`held_and_sold` read them back after a request changed them. The test
client: :func:`sign_in` (returns a CSRF token), :func:`buy`, :func:`session_id_from`, and the
``shopper`` fixture (a signed-in customer and a live batch). Faults:
``emulator.faults(fail_next=…)``; :func:`without_retries` makes them cheap (no SDK backoff);
:func:`unconfirmed_refund` is a refund left for the sweeper to retry. What the shop asked
Stripe: :meth:`Emulator.api_calls`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import stripe
from flask import Flask, g, has_app_context
from flask.testing import FlaskClient

import stripe_emulator
from shop import clock, inventory, orders, refunds
from shop.errors import PaymentUnavailable
from shop.extensions import db
from shop.models import Batch, Drop, Order, User
from shop.payments import gateway
from testkit import factories
from tests.support.clients import log_in

SECRET_KEY = "sk_test_emulator"
WEBHOOK_SECRET = "whsec_test_small_batch"
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"


def stripe_settings(emulator: Emulator | str) -> dict[str, Any]:
    """App settings that talk to ``emulator`` (an :class:`Emulator` or its base URL)."""
    url = emulator if isinstance(emulator, str) else emulator.url
    return {
        "STRIPE_API_BASE": url,
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def stripe_environment(emulator: Emulator | str) -> dict[str, str]:
    """The same settings as environment variables, for a shop started as a subprocess."""
    return {name: str(value) for name, value in stripe_settings(emulator).items()}


class Emulator:
    """A handle on a running emulator: its URL, its control API and its stored events."""

    def __init__(self, running: stripe_emulator.RunningEmulator | str) -> None:
        self.running = running  # in this process, or the base URL of one running elsewhere

    @property
    def url(self) -> str:
        return self.running if isinstance(self.running, str) else self.running.url

    # --- the /_emulator control API --------------------------------------------------------

    def control(self, method: str, path: str, body: dict | None = None) -> dict:
        response = requests.request(method, f"{self.url}/_emulator{path}", json=body, timeout=15)
        if response.status_code >= 400:
            raise AssertionError(
                f"emulator {method} {path}: {response.status_code} {response.text}"
            )
        return response.json()

    def reset(self) -> None:
        self.control("POST", "/reset")

    def complete(self, session_id: str, **fields: Any) -> dict:
        """Pay an open session as the customer would (``payment_status``, ``email``, ``card``,
        ``name``, ``shipping_address``); returns the session."""
        return self.control("POST", f"/sessions/{session_id}/complete", fields)

    def async_result(self, session_id: str, *, succeeded: bool) -> dict:
        return self.control(
            "POST", f"/sessions/{session_id}/async_result", {"succeeded": succeeded}
        )

    def expire(self, session_id: str) -> dict:
        return self.control("POST", f"/sessions/{session_id}/expire")

    def faults(self, **config: Any) -> dict:
        """Replace the fault configuration (``fail_next``, ``fail_status``, ``timeout_next``,
        ``hang_seconds``, ``delay_seconds``, ``paths``); ``faults()`` clears it."""
        return self.control("POST", "/faults", config)

    def webhooks(self, **config: Any) -> dict:
        """Change webhook delivery (``url``, ``secret``, ``duplicate``, ``out_of_order``, …)."""
        return self.control("POST", "/webhooks", config)

    def api_calls(self, path: str | None = None, *, after: int = 0) -> list[tuple[str, str]]:
        """Every ``/v1`` request the emulator received since its reset, as (method, path),
        oldest first — also failed ones and the SDK's retries, as Stripe's rate limit counts
        them; with ``path``, only those under it; with ``after`` (a :meth:`api_call_count`),
        only the later ones."""
        query = urlencode({"after": after, **({"path": path} if path else {})})
        received = self.control("GET", f"/requests?{query}")["data"]
        return [(entry["method"], entry["path"]) for entry in received]

    def api_call_count(self) -> int:
        """How many ``/v1`` requests the emulator received since its reset."""
        return self.control("GET", "/requests")["total"]

    def flush(self, timeout: float = 10) -> dict:
        return self.control("POST", "/webhooks/flush", {"timeout": timeout})

    def advance(self, seconds: float) -> dict:
        """Move the emulator clock (due sessions expire and raise their events)."""
        return self.control("POST", "/clock/advance", {"seconds": seconds})

    # --- the /v1 API, as the shop sees it --------------------------------------------------

    def client(self) -> stripe.StripeClient:
        """A StripeClient of its own (not the app's), for arranging and checking state."""
        return stripe.StripeClient(
            SECRET_KEY,
            base_addresses={"api": self.url},
            http_client=stripe.RequestsClient(timeout=(2, 10)),
        )

    def get(self, path: str, **params: Any) -> dict:
        response = requests.get(
            f"{self.url}/v1{path}",
            params=params,
            headers={"Authorization": f"Bearer {SECRET_KEY}"},
            timeout=15,
        )
        if response.status_code >= 400:
            raise AssertionError(f"emulator GET {path}: {response.status_code} {response.text}")
        return response.json()

    def session(self, session_id: str) -> dict:
        return self.get(f"/checkout/sessions/{session_id}")

    def events(self, type: str | None = None) -> list[dict]:
        """Stored events, oldest first, optionally of one ``type`` (``*`` wildcards allowed)."""
        params: dict[str, Any] = {"limit": 100}
        if type is not None:
            params["type"] = type
        return list(reversed(self.get("/events", **params)["data"]))

    def event(self, type: str, object_id: str | None = None) -> dict:
        """The newest stored event of ``type`` (about ``object_id``, if given)."""
        found = [
            e
            for e in self.events(type)
            if object_id is None or e["data"]["object"].get("id") == object_id
        ]
        if not found:
            raise AssertionError(f"no {type} event{f' for {object_id}' if object_id else ''}")
        return found[-1]

    def refunds(self, payment_intent: str | None = None) -> list[dict]:
        params: dict[str, Any] = {"limit": 100}
        if payment_intent is not None:
            params["payment_intent"] = payment_intent
        return self.get("/refunds", **params)["data"]


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[stripe_emulator.RunningEmulator]:
    with stripe_emulator.serve_in_thread(port=0, webhook_secret=WEBHOOK_SECRET) as running:
        yield running


@pytest.fixture
def emulator(emulator_server) -> Iterator[Emulator]:
    handle = Emulator(emulator_server)
    handle.reset()
    yield handle
    handle.reset()


# --- webhooks by hand ----------------------------------------------------------------------


def signature(payload: str, *, timestamp: int | None = None, secret: str = WEBHOOK_SECRET) -> str:
    """A ``Stripe-Signature`` header for ``payload`` (the exact text that will be sent)."""
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)


def deliver(
    client: FlaskClient,
    event: dict | str,
    *,
    timestamp: int | None = None,
    secret: str = WEBHOOK_SECRET,
    signature_header: str | None = None,
):
    """POST ``event`` to the shop's webhook as Stripe would: raw JSON, signed now (or at
    ``timestamp``) with ``secret``; returns the test client's response."""
    payload = event if isinstance(event, str) else json.dumps(event)
    header = signature_header or signature(payload, timestamp=timestamp, secret=secret)
    return client.post(
        "/stripe/webhook",
        data=payload.encode(),
        headers={"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"},
    )


# --- data ---------------------------------------------------------------------------------


def live_batch(*, drop: Drop | None = None, **kwargs: Any) -> Batch:
    """A batch in a drop that is live by the real clock (views read ``clock.now()``)."""
    if drop is None:
        drop = factories.make_drop(opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    return factories.make_batch(drop=drop, **kwargs)


def held_order(batch: Batch, customer: User, quantity: int = 1) -> Order:
    """A committed hold with its Checkout Session created at the emulator (through the real
    services, as the buy button does). Needs the app pointed at the emulator."""
    order = inventory.hold(batch.id, quantity, customer=customer, now=clock.now())
    db.session.commit()
    orders.continue_checkout(order, now=clock.now())
    return db.session.get(Order, order.id, populate_existing=True)


def paid_order(emulator: Emulator, batch: Batch, customer: User, quantity: int = 1) -> Order:
    """A paid order with its serials: held, paid at the emulator, fulfilled."""
    order = held_order(batch, customer, quantity)
    emulator.complete(order.checkout_session_id)
    orders.fulfil(order.checkout_session_id, now=clock.now())
    return db.session.get(Order, order.id, populate_existing=True)


def fresh(order: Order) -> Order:
    """``order`` as the database has it now: requests and webhooks commit in sessions of
    their own, so the test's snapshot is dropped first."""
    db.session.rollback()
    return db.session.get(Order, order.id)


def held_and_sold(batch_id: int) -> tuple[int, int]:
    """The batch's counters as the database has them now (see :func:`fresh`)."""
    db.session.rollback()
    batch = db.session.get(Batch, batch_id)
    return batch.held, batch.sold


# --- a customer in the test client ---------------------------------------------------------

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def sign_in(client: FlaskClient, user: User) -> str:
    """Log ``user`` in on ``client`` (as Flask-Login would) and return a CSRF token for forms."""
    log_in(client, user)
    if has_app_context():  # the app fixture's context (and g) outlives requests: forget the
        g.pop("_login_user", None)  # user Flask-Login cached for the previous request
    page = client.get("/account/")
    found = _CSRF.search(page.get_data(as_text=True))
    if found is None:
        raise AssertionError(f"no CSRF token on /account/ ({page.status_code})")
    return found.group(1)


@pytest.fixture
def shopper(app, client):
    """A signed-in customer and a live batch of 5 at 42.00 (limit 2): (customer, batch, csrf)."""
    batch = live_batch(edition_size=5, limit=2, price=4200)
    customer = factories.make_customer()
    db.session.commit()
    return customer, batch, sign_in(client, customer)


def buy(client: FlaskClient, batch_id: int, quantity: Any = 1, *, csrf: str, **headers: str):
    """Press the buy button as a browser does: ``POST /checkout/batches/<id>`` with
    ``quantity``, then follow its 303 to ``pay`` once. Returns the answer that reaches the
    customer: the redirect to Stripe, or the refusal (from buy, or from pay)."""
    held = hold(client, batch_id, quantity, csrf=csrf, **headers)
    if held.status_code != 303 or not _PAY_PATH.fullmatch(held.headers["Location"]):
        return held
    return client.get(held.headers["Location"], headers=headers)


def hold(client: FlaskClient, batch_id: int, quantity: Any = 1, *, csrf: str, **headers: str):
    """Only the buy request itself (the hold): its 303 points at ``pay``."""
    return client.post(
        f"/checkout/batches/{batch_id}",
        data={"quantity": quantity, "csrf_token": csrf},
        headers=headers,
    )


_PAY_PATH = re.compile(r"/checkout/orders/[A-Za-z0-9_-]+/pay")


def session_id_from(location: str) -> str:
    """The Checkout Session id in a hosted-page URL (``…/checkout/cs_test_…``)."""
    found = re.search(r"(cs_(?:test|live)_[A-Za-z0-9]+)", location)
    if found is None:
        raise AssertionError(f"no session id in {location!r}")
    return found.group(1)


def without_retries(app: Flask) -> None:
    """Let the app's Stripe client try each call once (production retries twice), so a fault
    test needs ``fail_next=1`` and no backoff sleeps. Call before the app first uses Stripe."""
    app.config["STRIPE_MAX_NETWORK_RETRIES"] = 0
    gateway.close(app)


def unconfirmed_refund(app: Flask, emulator: Emulator) -> tuple[Order, datetime]:
    """A paid order whose refund Stripe answered with a 500: the order is refunded, the refund
    id still unknown, for the sweeper to retry. Returns the order and when it was refunded."""
    order = paid_order(emulator, live_batch(edition_size=5), factories.make_customer(), 1)
    without_retries(app)
    emulator.faults(fail_next=1, fail_status=500, paths=["/v1/refunds"])
    now = clock.now()
    with pytest.raises(PaymentUnavailable):
        refunds.refund_order(order, actor=None, now=now)
    return order, now

"""Helpers for the emulator contract tests: session params, the hosted form, a webhook receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
import stripe
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from stripe_emulator import RunningEmulator
from stripe_emulator.server import QuietRequestHandler, serve_in_background

API_KEY = "sk_test_emulator_contract"
WEBHOOK_SECRET = "whsec_emulator_contract_tests"
SUCCESS_URL = "https://shop.test/checkout/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL_URL = "https://shop.test/cart"


@contextmanager
def stripe_client_for(
    emulator: RunningEmulator,
    *,
    api_key: str | None = API_KEY,
    timeout: float | tuple[float, float] = (2, 5),
    retries: int = 2,
) -> Iterator[stripe.StripeClient]:
    """A StripeClient pointed at ``emulator``, closed (with its sockets) afterwards."""
    http = stripe.RequestsClient(timeout=timeout)
    try:
        yield stripe.StripeClient(
            api_key,  # type: ignore[arg-type]
            base_addresses={"api": emulator.url},
            max_network_retries=retries,
            http_client=http,
        )
    finally:
        http.close()


def session_params(emulator: RunningEmulator, **overrides: Any) -> dict[str, Any]:
    """Valid create params for a one-item payment session.

    ``overrides`` replace top-level keys; an override of ``None`` leaves the key out.
    """
    params: dict[str, Any] = {
        "mode": "payment",
        "client_reference_id": "order_42",
        "customer_email": "ada@example.com",
        "expires_at": emulator.state.now() + 31 * 60,
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 2500,
                    "product_data": {"name": "Highland Rye, Batch No. 7"},
                },
                "quantity": 2,
            }
        ],
        "metadata": {"order_id": "42"},
        "payment_intent_data": {"metadata": {"order_id": "42"}},
        "allowed_payment_method_types": ["card"],
        "success_url": SUCCESS_URL,
        "cancel_url": CANCEL_URL,
    }
    params.update(overrides)
    return {key: value for key, value in params.items() if value is not None}


def pay(session_url: str, card: str = "4242 4242 4242 4242", **fields: str) -> requests.Response:
    """Submit the hosted checkout form like a browser without JavaScript (no redirect following)."""
    form = {"email": "ada@example.com", "card_number": card, **fields}
    return requests.post(session_url, data=form, allow_redirects=False, timeout=5)


def control(emulator: RunningEmulator, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST to the emulator's control API and return its JSON (raising on HTTP errors)."""
    response = requests.post(f"{emulator.url}/_emulator/{path}", json=body or {}, timeout=15)
    response.raise_for_status()
    return response.json()


def inspect(emulator: RunningEmulator, path: str) -> Any:
    response = requests.get(f"{emulator.url}/_emulator/{path}", timeout=5)
    response.raise_for_status()
    return response.json()


@dataclass
class ReceivedWebhook:
    body: bytes
    headers: dict[str, str]
    status: int


class WebhookReceiver:
    """A tiny real HTTP endpoint that records webhook attempts and fails the first N of them."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.attempts: list[ReceivedWebhook] = []
        self._cond = threading.Condition()
        self._server = make_server(
            "127.0.0.1", 0, self._app, threaded=True, request_handler=QuietRequestHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}/stripe/webhook"
        self._thread = serve_in_background(self._server)

    @Request.application
    def _app(self, request: Request) -> Response:
        body = request.get_data()
        with self._cond:
            status = 500 if len(self.attempts) < self.fail_first else 200
            self.attempts.append(ReceivedWebhook(body, dict(request.headers), status))
            self._cond.notify_all()
        return Response("ok" if status == 200 else "try again", status=status)

    @property
    def delivered(self) -> list[ReceivedWebhook]:
        """Attempts this receiver answered with 200."""
        with self._cond:
            return [attempt for attempt in self.attempts if attempt.status == 200]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedWebhook]:
        """Wait until ``count`` deliveries were accepted; return them in arrival order."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([a for a in self.attempts if a.status == 200]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return [attempt for attempt in self.attempts if attempt.status == 200]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

"""Idempotency keys (docs/STRIPE.md §2): replay, mismatch, in-flight conflict, expiry after 24 h."""

from __future__ import annotations

import threading
import time

import pytest
import requests
import stripe

from tests.emulator.support import API_KEY, control, session_params


def test_a_repeated_key_replays_the_same_session(emulator, stripe_client):
    params = session_params(emulator)
    options = {"idempotency_key": "checkout:42:1"}

    first = stripe_client.v1.checkout.sessions.create(params=params, options=options)
    again = stripe_client.v1.checkout.sessions.create(params=params, options=options)

    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert len(stripe_client.v1.checkout.sessions.list().data) == 1


def test_a_replay_returns_the_saved_body_even_after_the_session_changed(emulator, stripe_client):
    params = session_params(emulator)
    options = {"idempotency_key": "checkout:42:1"}
    first = stripe_client.v1.checkout.sessions.create(params=params, options=options)
    stripe_client.v1.checkout.sessions.expire(first.id)

    again = stripe_client.v1.checkout.sessions.create(params=params, options=options)

    assert again.id == first.id
    assert again.status == "open"  # the stored response, as Stripe would send it


def test_the_same_key_with_other_parameters_is_an_idempotency_error(emulator, stripe_client):
    options = {"idempotency_key": "checkout:42:1"}
    stripe_client.v1.checkout.sessions.create(params=session_params(emulator), options=options)

    with pytest.raises(stripe.IdempotencyError) as caught:
        stripe_client.v1.checkout.sessions.create(
            params=session_params(emulator, client_reference_id="order_43"), options=options
        )

    assert caught.value.http_status == 400
    assert caught.value.error.type == "idempotency_error"


def test_the_same_key_on_another_endpoint_is_an_idempotency_error(emulator, stripe_client):
    options = {"idempotency_key": "shared-key"}
    session = stripe_client.v1.checkout.sessions.create(
        params=session_params(emulator), options=options
    )

    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.checkout.sessions.expire(session.id, options=options)


def test_a_request_that_failed_validation_does_not_use_up_its_key(emulator, stripe_client):
    options = {"idempotency_key": "checkout:42:1"}
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.checkout.sessions.create(
            params=session_params(emulator, colour="blue"), options=options
        )

    session = stripe_client.v1.checkout.sessions.create(
        params=session_params(emulator), options=options
    )

    assert session.status == "open"
    assert "Idempotent-Replayed" not in session.last_response.headers


def test_a_business_error_is_saved_and_replayed_under_its_key(emulator, stripe_client):
    session = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))
    stripe_client.v1.checkout.sessions.expire(session.id)
    options = {"idempotency_key": "expire:42:1"}

    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            stripe_client.v1.checkout.sessions.expire(session.id, options=options)

    assert caught.value.headers["Idempotent-Replayed"] == "true"


def test_a_key_older_than_24_hours_starts_a_fresh_request(emulator, stripe_client):
    options = {"idempotency_key": "checkout:42:1"}
    first = stripe_client.v1.checkout.sessions.create(
        params=session_params(emulator), options=options
    )

    control(emulator, "clock/advance", {"seconds": 24 * 3600 + 1})
    second = stripe_client.v1.checkout.sessions.create(
        params=session_params(emulator), options=options
    )

    assert second.id != first.id


def test_a_key_still_in_flight_gets_a_retryable_409(emulator):
    control(emulator, "faults", {"delay_seconds": 0.5, "paths": ["/v1/checkout/sessions"]})
    headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "slow-key"}
    body = {
        "mode": "payment",
        "line_items[0][price_data][currency]": "eur",
        "line_items[0][price_data][unit_amount]": "100",
        "line_items[0][price_data][product_data][name]": "Rye",
        "line_items[0][quantity]": "1",
    }
    url = f"{emulator.url}/v1/checkout/sessions"
    results: list[requests.Response] = []
    first = threading.Thread(
        target=lambda: results.append(requests.post(url, data=body, headers=headers, timeout=5))
    )
    first.start()
    deadline = time.monotonic() + 5
    while "slow-key" not in emulator.state.idempotency and time.monotonic() < deadline:
        time.sleep(0.01)

    second = requests.post(url, data=body, headers=headers, timeout=5)
    first.join()

    assert second.status_code == 409
    assert second.headers["Stripe-Should-Retry"] == "true"
    assert second.json()["error"]["code"] == "idempotency_key_in_use"
    assert results[0].status_code == 200


def test_refunds_with_the_same_key_refund_once(emulator, stripe_client):
    session = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))
    control(emulator, f"sessions/{session.id}/complete")
    intent = stripe_client.v1.checkout.sessions.retrieve(session.id).payment_intent
    options = {"idempotency_key": "refund:42:1"}

    first = stripe_client.v1.refunds.create(
        params={"payment_intent": intent, "amount": 1000}, options=options
    )
    again = stripe_client.v1.refunds.create(
        params={"payment_intent": intent, "amount": 1000}, options=options
    )

    assert again.id == first.id
    charge = stripe_client.v1.payment_intents.retrieve(intent).latest_charge
    assert stripe_client.v1.charges.retrieve(charge).amount_refunded == 1000

"""Fault injection against stripe-python's retry logic (docs/STRIPE.md §7)."""

from __future__ import annotations

import pytest
import stripe

from tests.emulator.support import control, inspect, session_params, stripe_client_for


def test_an_injected_500_is_retried_by_the_sdk_and_then_succeeds(emulator, stripe_client):
    control(emulator, "faults", {"fail_next": 1})

    session = stripe_client.v1.checkout.sessions.create(
        params=session_params(emulator), options={"idempotency_key": "checkout:42:1"}
    )

    assert session.status == "open"
    assert len(stripe_client.v1.checkout.sessions.list().data) == 1


def test_500s_beyond_the_retry_budget_surface_as_api_error(emulator, stripe_client):
    control(emulator, "faults", {"fail_next": 3, "fail_status": 503})

    with pytest.raises(stripe.APIError) as caught:
        stripe_client.v1.checkout.sessions.list()

    assert caught.value.http_status == 503
    assert caught.value.headers["Stripe-Should-Retry"] == "true"
    assert control(emulator, "faults", {})["fail_next"] == 0


def test_a_hanging_api_raises_a_connection_error_once_retries_are_exhausted(emulator):
    control(emulator, "faults", {"timeout_next": 3, "hang_seconds": 2})

    with (
        stripe_client_for(emulator, timeout=(1, 0.3)) as client,
        pytest.raises(stripe.APIConnectionError),
    ):
        client.v1.checkout.sessions.list()

    assert emulator.state.faults.timeout_next == 0


def test_a_timed_out_create_retried_with_its_key_makes_one_session(emulator):
    control(emulator, "faults", {"timeout_next": 1, "hang_seconds": 0.6})

    with stripe_client_for(emulator, timeout=(1, 0.3)) as client:
        session = client.v1.checkout.sessions.create(
            params=session_params(emulator), options={"idempotency_key": "checkout:42:1"}
        )
        # The first, slow attempt finishes later and finds the key already answered.
        emulator.state.stopping.wait(0.6)
        sessions = client.v1.checkout.sessions.list()

    assert [s.id for s in sessions.data] == [session.id]


def test_faults_only_hit_the_given_paths(emulator, stripe_client):
    control(emulator, "faults", {"fail_next": 5, "paths": ["/v1/refunds"]})

    session = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))

    assert session.status == "open"
    with stripe_client_for(emulator, retries=0) as impatient, pytest.raises(stripe.APIError):
        impatient.v1.refunds.list()


def test_a_delay_slows_api_answers(emulator, stripe_client):
    control(emulator, "faults", {"delay_seconds": 0.2})

    with (
        stripe_client_for(emulator, timeout=(1, 0.1), retries=0) as impatient,
        pytest.raises(stripe.APIConnectionError),
    ):
        impatient.v1.checkout.sessions.list()

    assert stripe_client.v1.checkout.sessions.list().object == "list"


def test_reset_forgets_objects_and_faults(emulator, stripe_client):
    stripe_client.v1.checkout.sessions.create(params=session_params(emulator))
    control(emulator, "faults", {"fail_next": 5})

    control(emulator, "reset")

    assert stripe_client.v1.checkout.sessions.list().data == []
    assert stripe_client.v1.events.list().data == []


def test_every_api_request_received_is_logged_also_the_failed_ones(emulator, stripe_client):
    session = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))
    control(emulator, "faults", {"fail_next": 1})

    stripe_client.v1.checkout.sessions.retrieve(session.id)  # a 500, then the SDK's retry

    log = inspect(emulator, "requests")["data"]
    assert [(r["method"], r["path"]) for r in log] == [
        ("POST", "/v1/checkout/sessions"),
        ("GET", f"/v1/checkout/sessions/{session.id}"),
        ("GET", f"/v1/checkout/sessions/{session.id}"),
    ]
    assert [r["seq"] for r in log] == [1, 2, 3]
    only = inspect(emulator, f"requests?path=/v1/checkout/sessions/{session.id}")["data"]
    assert len(only) == 2
    later = inspect(emulator, "requests?after=2")
    assert [r["seq"] for r in later["data"]] == [3] and later["total"] == 3
    control(emulator, "reset")
    assert inspect(emulator, "requests")["data"] == []

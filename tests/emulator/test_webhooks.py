"""Events and signed webhook delivery (docs/STRIPE.md §5, §6) to a real local receiver."""

from __future__ import annotations

import json
import time

import stripe

from stripe_emulator import serve_in_thread
from tests.emulator.support import (
    WEBHOOK_SECRET,
    WebhookReceiver,
    control,
    inspect,
    session_params,
    stripe_client_for,
)


def _paid_session(emulator, client) -> str:
    session = client.v1.checkout.sessions.create(params=session_params(emulator))
    control(emulator, f"sessions/{session.id}/complete")
    return session.id


def _types(deliveries) -> list[str]:
    return [json.loads(d.body)["type"] for d in deliveries]


def test_a_payment_is_delivered_as_webhooks_that_verify_with_the_secret(
    webhook_emulator, webhook_client, webhook_receiver
):
    session_id = _paid_session(webhook_emulator, webhook_client)

    delivered = webhook_receiver.wait_for(2)

    assert _types(delivered) == ["payment_intent.succeeded", "checkout.session.completed"]
    completed = delivered[1]
    event = stripe.Webhook.construct_event(
        completed.body, completed.headers["Stripe-Signature"], WEBHOOK_SECRET
    )
    assert event.type == "checkout.session.completed"
    assert event.api_version == "2026-10-28.endive"
    assert event.data.object.id == session_id
    assert event.data.object.payment_status == "paid"
    assert "line_items" not in event.data.object
    assert completed.headers["Content-Type"] == "application/json; charset=utf-8"
    assert completed.headers["User-Agent"] == "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
    assert [part.split("=")[0] for part in completed.headers["Stripe-Signature"].split(",")] == [
        "t",
        "v1",
        "v0",
    ]
    assert (
        webhook_client.construct_event(
            completed.body, completed.headers["Stripe-Signature"], WEBHOOK_SECRET
        ).id
        == event.id
    )


def test_a_signature_made_with_another_secret_does_not_verify(
    webhook_emulator, webhook_client, webhook_receiver
):
    _paid_session(webhook_emulator, webhook_client)
    [first, *_] = webhook_receiver.wait_for(1)

    try:
        stripe.Webhook.construct_event(
            first.body, first.headers["Stripe-Signature"], "whsec_someone_else"
        )
    except stripe.SignatureVerificationError:
        pass
    else:
        raise AssertionError("a foreign secret must not verify")


def test_a_failing_receiver_gets_the_event_again_with_a_fresh_signature(
    webhook_emulator, webhook_client
):
    receiver = WebhookReceiver(fail_first=2)
    try:
        control(webhook_emulator, "webhooks", {"url": receiver.url})
        session = webhook_client.v1.checkout.sessions.create(
            params=session_params(webhook_emulator)
        )
        webhook_client.v1.checkout.sessions.expire(session.id)

        [delivered] = receiver.wait_for(1)
        assert control(webhook_emulator, "webhooks/flush")["flushed"] is True
    finally:
        receiver.close()

    assert [a.status for a in receiver.attempts] == [500, 500, 200]
    assert len({a.body for a in receiver.attempts}) == 1
    stripe.Webhook.construct_event(
        delivered.body, delivered.headers["Stripe-Signature"], WEBHOOK_SECRET
    )
    log = inspect(webhook_emulator, "deliveries")["data"]
    assert [(entry["attempt"], entry["status"]) for entry in log] == [(1, 500), (2, 500), (3, 200)]


def test_delivery_gives_up_after_max_attempts(webhook_emulator, webhook_client):
    receiver = WebhookReceiver(fail_first=100)
    try:
        control(webhook_emulator, "webhooks", {"url": receiver.url, "max_attempts": 3})
        session = webhook_client.v1.checkout.sessions.create(
            params=session_params(webhook_emulator)
        )
        webhook_client.v1.checkout.sessions.expire(session.id)
        assert control(webhook_emulator, "webhooks/flush")["flushed"] is True
    finally:
        receiver.close()

    assert len(receiver.attempts) == 3
    undelivered = webhook_client.v1.events.list(params={"delivery_success": False})
    assert [e.type for e in undelivered.data] == ["checkout.session.expired"]


def test_duplicate_delivery_sends_every_event_twice(
    webhook_emulator, webhook_client, webhook_receiver
):
    control(webhook_emulator, "webhooks", {"duplicate": True})
    session = webhook_client.v1.checkout.sessions.create(params=session_params(webhook_emulator))
    webhook_client.v1.checkout.sessions.expire(session.id)

    delivered = webhook_receiver.wait_for(2)

    assert len(delivered) == 2
    assert json.loads(delivered[0].body)["id"] == json.loads(delivered[1].body)["id"]


def test_out_of_order_delivery_sends_newer_events_first(
    webhook_emulator, webhook_client, webhook_receiver
):
    control(webhook_emulator, "webhooks", {"out_of_order": True})

    _paid_session(webhook_emulator, webhook_client)
    delivered = webhook_receiver.wait_for(2)

    assert _types(delivered) == ["checkout.session.completed", "payment_intent.succeeded"]


def test_fail_first_drops_attempts_before_they_reach_the_receiver(
    webhook_emulator, webhook_client, webhook_receiver
):
    control(webhook_emulator, "webhooks", {"fail_first": 2})
    session = webhook_client.v1.checkout.sessions.create(params=session_params(webhook_emulator))
    webhook_client.v1.checkout.sessions.expire(session.id)

    delivered = webhook_receiver.wait_for(1)
    control(webhook_emulator, "webhooks/flush")

    assert len(webhook_receiver.attempts) == 1
    assert _types(delivered) == ["checkout.session.expired"]
    log = inspect(webhook_emulator, "deliveries")["data"]
    assert [entry["ok"] for entry in log] == [False, False, True]
    assert "injected" in log[0]["error"]


def test_a_delay_holds_deliveries_back_without_slowing_the_api(
    webhook_emulator, webhook_client, webhook_receiver
):
    control(webhook_emulator, "webhooks", {"delay_seconds": 0.4})
    session = webhook_client.v1.checkout.sessions.create(params=session_params(webhook_emulator))

    started = time.monotonic()
    webhook_client.v1.checkout.sessions.expire(session.id)
    answered = time.monotonic() - started
    early = list(webhook_receiver.attempts)
    webhook_receiver.wait_for(1)

    assert answered < 0.3
    assert early == []
    assert len(webhook_receiver.delivered) == 1


def test_a_stored_event_can_be_resent(webhook_emulator, webhook_client, webhook_receiver):
    session = webhook_client.v1.checkout.sessions.create(params=session_params(webhook_emulator))
    webhook_client.v1.checkout.sessions.expire(session.id)
    [first] = webhook_receiver.wait_for(1)
    event_id = json.loads(first.body)["id"]

    control(webhook_emulator, f"events/{event_id}/resend")

    second = webhook_receiver.wait_for(2)[1]
    assert json.loads(second.body)["id"] == event_id


def test_events_can_be_listed_by_type_and_retrieved(emulator, stripe_client):
    _paid_session(emulator, stripe_client)

    everything = stripe_client.v1.events.list()
    sessions_only = stripe_client.v1.events.list(params={"type": "checkout.session.*"})
    event = stripe_client.v1.events.retrieve(everything.data[0].id)

    assert [e.type for e in everything.data] == [
        "checkout.session.completed",
        "payment_intent.succeeded",
    ]
    assert [e.type for e in sessions_only.data] == ["checkout.session.completed"]
    assert event.object == "event"
    assert event.data.object.object == "checkout.session"
    assert event.pending_webhooks == 0
    assert event.request.to_dict() == {"id": None, "idempotency_key": None}


def test_without_a_webhook_url_events_are_only_stored():
    with serve_in_thread() as emulator, stripe_client_for(emulator) as client:
        _paid_session(emulator, client)

        assert inspect(emulator, "deliveries")["data"] == []
        assert len(client.v1.events.list().data) == 2

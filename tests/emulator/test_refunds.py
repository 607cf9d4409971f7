"""Refunds (docs/STRIPE.md §4): defaults, partial refunds, limits, and their events."""

from __future__ import annotations

import pytest
import stripe

from tests.emulator.support import control, session_params


@pytest.fixture
def paid_intent(emulator, stripe_client) -> str:
    """The PaymentIntent id of a paid €50.00 session."""
    session = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))
    control(emulator, f"sessions/{session.id}/complete")
    return stripe_client.v1.checkout.sessions.retrieve(session.id).payment_intent


def _charge(stripe_client, intent_id: str):
    charge_id = stripe_client.v1.payment_intents.retrieve(intent_id).latest_charge
    return stripe_client.v1.charges.retrieve(charge_id)


def test_a_refund_without_an_amount_refunds_everything(stripe_client, paid_intent):
    refund = stripe_client.v1.refunds.create(params={"payment_intent": paid_intent})

    assert refund.id.startswith("re_")
    assert (refund.amount, refund.currency, refund.status) == (5000, "eur", "succeeded")
    assert refund.payment_intent == paid_intent
    charge = _charge(stripe_client, paid_intent)
    assert (charge.amount_refunded, charge.refunded) == (5000, True)
    assert stripe_client.v1.refunds.retrieve(refund.id).charge == charge.id


def test_partial_refunds_add_up_and_only_the_last_marks_the_charge_refunded(
    stripe_client, paid_intent
):
    stripe_client.v1.refunds.create(params={"payment_intent": paid_intent, "amount": 1500})
    after_first = _charge(stripe_client, paid_intent)
    charge_id = after_first.id
    stripe_client.v1.refunds.create(params={"charge": charge_id})

    assert (after_first.amount_refunded, after_first.refunded) == (1500, False)
    charge = _charge(stripe_client, paid_intent)
    assert (charge.amount_refunded, charge.refunded) == (5000, True)
    refunds = stripe_client.v1.refunds.list(params={"payment_intent": paid_intent})
    assert [r.amount for r in refunds.data] == [3500, 1500]


def test_a_refund_larger_than_what_is_left_is_amount_too_large(stripe_client, paid_intent):
    stripe_client.v1.refunds.create(params={"payment_intent": paid_intent, "amount": 4000})

    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.refunds.create(params={"payment_intent": paid_intent, "amount": 1001})

    assert caught.value.http_status == 400
    assert caught.value.code == "amount_too_large"
    assert "€10.01" in caught.value.user_message


def test_a_fully_refunded_charge_is_already_refunded(stripe_client, paid_intent):
    stripe_client.v1.refunds.create(params={"payment_intent": paid_intent})

    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.refunds.create(params={"payment_intent": paid_intent})

    assert caught.value.code == "charge_already_refunded"


@pytest.mark.parametrize(
    ("params", "param"),
    [({"payment_intent": "pi_missing"}, "payment_intent"), ({"charge": "ch_missing"}, "charge")],
)
def test_refunding_an_unknown_payment_is_resource_missing(stripe_client, params, param):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.refunds.create(params=params)

    assert caught.value.http_status == 404
    assert (caught.value.code, caught.value.param) == ("resource_missing", param)


def test_a_refund_needs_a_payment_intent_or_a_charge(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.refunds.create(params={"amount": 100})

    assert caught.value.code == "parameter_missing"


def test_a_pending_async_payment_cannot_be_refunded(emulator, stripe_client):
    session = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))
    control(emulator, f"sessions/{session.id}/complete", {"payment_status": "unpaid"})
    intent = stripe_client.v1.checkout.sessions.retrieve(session.id).payment_intent

    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.refunds.create(params={"payment_intent": intent})

    assert caught.value.param == "payment_intent"


def test_every_refund_sends_refund_created_and_charge_refunded(stripe_client, paid_intent):
    stripe_client.v1.refunds.create(params={"payment_intent": paid_intent, "amount": 500})

    created, refunded = (
        stripe_client.v1.events.list(params={"type": t}).data
        for t in ("refund.created", "charge.refunded")
    )

    assert [e.data.object.amount for e in created] == [500]
    [charge_event] = refunded
    assert charge_event.data.object.payment_intent == paid_intent
    assert (charge_event.data.object.amount_refunded, charge_event.data.object.refunded) == (
        500,
        False,
    )
    assert charge_event.request.id is not None


def test_a_refund_can_expand_its_charge(stripe_client, paid_intent):
    refund = stripe_client.v1.refunds.create(
        params={"payment_intent": paid_intent, "expand": ["charge"]}
    )

    assert refund.charge.object == "charge"
    assert refund.charge.refunded is True

"""Payments the shop did not create are someone else's money: recorded for the operator, never
refunded or fulfilled — through the official ``stripe`` library against the emulator."""

import pytest
from sqlalchemy import select

from shop.extensions import db
from shop.models import StripeEvent, UnrecognisedPayment
from shop.models.order import HELD
from testkit.factories import make_customer
from tests.support.stripe import (
    deliver,
    fresh,
    held_order,
    live_batch,
    stripe_settings,
)


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


def _foreign_session(emulator, **overrides) -> str:
    """A session another integration on the same Stripe account creates and its buyer pays."""
    params = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 1900,
                    "product_data": {"name": "A T-shirt from the other shop"},
                },
                "quantity": 1,
            }
        ],
        "success_url": "https://elsewhere.example/thanks",
        **overrides,
    }
    session = emulator.client().v1.checkout.sessions.create(params=params)
    emulator.complete(session.id)
    return session.id


def _recorded() -> list[UnrecognisedPayment]:
    db.session.rollback()
    return list(db.session.scalars(select(UnrecognisedPayment)))


def test_a_paid_session_another_integration_created_is_recorded_and_never_refunded(
    client, emulator
):
    session_id = _foreign_session(emulator)
    event = emulator.event("checkout.session.completed", session_id)

    response = deliver(client, event)

    assert response.status_code == 200 and response.json["outcome"] == "unrecognised"
    assert emulator.refunds() == []
    assert emulator.session(session_id)["status"] == "complete"
    [recorded] = _recorded()
    assert recorded.session_id == session_id and recorded.event_id == event["id"]
    assert (recorded.amount_total, recorded.currency) == (1900, "usd")
    assert recorded.payment_intent_id == emulator.session(session_id)["payment_intent"]
    assert db.session.get(StripeEvent, event["id"]) is not None


def test_a_foreign_session_naming_one_of_our_orders_neither_pays_nor_refunds_it(
    app, client, emulator
):
    ours = held_order(live_batch(edition_size=5, limit=2, price=1900), make_customer(), 1)
    forged = {"order": ours.public_id}
    session_id = _foreign_session(emulator, client_reference_id=ours.public_id, metadata=forged)

    response = deliver(client, emulator.event("checkout.session.completed", session_id))

    assert response.json["outcome"] == "unrecognised"
    assert fresh(ours).state == HELD and fresh(ours).checkout_session_id != session_id
    assert emulator.refunds() == []
    [recorded] = _recorded()
    assert recorded.client_reference_id == recorded.metadata_order == ours.public_id


def test_a_foreign_session_delivered_twice_is_recorded_once(client, emulator):
    session_id = _foreign_session(emulator)
    event = emulator.event("checkout.session.completed", session_id)
    deliver(client, event)

    again = deliver(client, emulator.event("checkout.session.completed", session_id))
    succeeded = deliver(
        client,
        {
            **event,
            "id": "evt_async_" + session_id[-10:],
            "type": "checkout.session.async_payment_succeeded",
        },
    )

    assert again.json["outcome"] == "duplicate"
    assert succeeded.json["outcome"] == "unrecognised"
    assert len(_recorded()) == 1 and emulator.refunds() == []


def test_the_operator_lists_unrecognised_payments_with_their_amount(client, emulator, runner):
    session_id = _foreign_session(emulator)
    deliver(client, emulator.event("checkout.session.completed", session_id))

    listed = runner.invoke(args=["shop", "unrecognised-payments"])

    assert listed.exit_code == 0
    assert session_id in listed.output and "$19.00" in listed.output


def test_no_unrecognised_payments_is_said_plainly(runner):
    listed = runner.invoke(args=["shop", "unrecognised-payments"])

    assert listed.exit_code == 0 and "No unrecognised payments." in listed.output

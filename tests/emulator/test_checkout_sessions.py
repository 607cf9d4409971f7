"""Checkout Session lifecycle via stripe-python: create, read, list, expire, clock
(docs/STRIPE.md §2, §3)."""

from __future__ import annotations

import operator
import re

import pytest
import requests
import stripe

from tests.emulator.support import control, pay, session_params


def test_a_new_session_is_open_with_a_hosted_url_and_no_payment_intent(emulator, stripe_client):
    session = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))

    assert re.fullmatch(r"cs_test_[A-Za-z0-9]{58}", session.id)
    assert session.object == "checkout.session"
    assert session.status == "open"
    assert session.payment_status == "unpaid"
    assert session.payment_intent is None
    assert session.url == f"{emulator.url}/checkout/{session.id}"
    assert session.amount_subtotal == 5000
    assert session.amount_total == 5000
    assert session.currency == "eur"
    assert session.metadata.to_dict() == {"order_id": "42"}
    assert session.client_reference_id == "order_42"
    assert session.payment_method_types == ["card"]
    assert session.livemode is False


def test_a_session_read_back_expands_its_line_items(emulator, stripe_client):
    created = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))

    session = stripe_client.v1.checkout.sessions.retrieve(
        created.id, params={"expand": ["line_items"]}
    )

    assert session.id == created.id
    [item] = session.line_items.data
    assert item.object == "item"
    assert item.description == "Highland Rye, Batch No. 7"
    assert item.quantity == 2
    assert item.amount_total == 5000
    assert item.price.unit_amount == 2500
    assert item.price.currency == "eur"


def test_line_items_are_not_included_unless_expanded(emulator, stripe_client):
    created = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))

    session = stripe_client.v1.checkout.sessions.retrieve(created.id)

    assert "line_items" not in session


def test_line_items_can_be_listed_page_by_page(emulator, stripe_client):
    items = [
        {
            "price_data": {
                "currency": "eur",
                "unit_amount": 100 * n,
                "product_data": {"name": f"Item {n}"},
            },
            "quantity": 1,
        }
        for n in range(1, 4)
    ]
    created = stripe_client.v1.checkout.sessions.create(
        params=session_params(emulator, line_items=items)
    )

    first = stripe_client.v1.checkout.sessions.line_items.list(created.id, params={"limit": 2})
    rest = stripe_client.v1.checkout.sessions.line_items.list(
        created.id, params={"limit": 2, "starting_after": first.data[-1].id}
    )

    assert [i.description for i in first.data] == ["Item 1", "Item 2"]
    assert first.has_more is True
    assert [i.description for i in rest.data] == ["Item 3"]
    assert rest.has_more is False
    assert created.amount_total == 600


def test_an_unknown_session_is_a_404_resource_missing(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.checkout.sessions.retrieve("cs_test_nope")

    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert caught.value.headers["request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("service", "kind"),
    [
        ("checkout.sessions", "checkout.session"),
        ("payment_intents", "payment_intent"),
        ("charges", "charge"),
        ("refunds", "refund"),
        ("coupons", "coupon"),
        ("promotion_codes", "promotion_code"),
        ("shipping_rates", "shipping_rate"),
        ("events", "event"),
    ],
)
def test_an_unknown_id_of_any_kind_is_a_404_that_names_the_kind(stripe_client, service, kind):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        operator.attrgetter(service)(stripe_client.v1).retrieve("nope")

    assert caught.value.http_status == 404
    assert (caught.value.code, caught.value.param) == ("resource_missing", "id")
    assert caught.value.user_message == f"No such {kind}: 'nope'"


def test_completing_an_unknown_session_through_the_controls_is_a_404(emulator):
    response = requests.post(
        f"{emulator.url}/_emulator/sessions/cs_test_nope/complete", json={}, timeout=5
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"
    assert response.json()["error"]["message"] == "No such checkout.session: 'cs_test_nope'"


def test_sessions_are_listed_newest_first_and_filtered_by_status(emulator, stripe_client):
    older = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))
    newer = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))
    stripe_client.v1.checkout.sessions.expire(older.id)

    everything = stripe_client.v1.checkout.sessions.list()
    expired = stripe_client.v1.checkout.sessions.list(params={"status": "expired"})
    first_page = stripe_client.v1.checkout.sessions.list(params={"limit": 1})

    assert everything.object == "list"
    assert everything.url == "/v1/checkout/sessions"
    assert [s.id for s in everything.data] == [newer.id, older.id]
    assert [s.id for s in expired.data] == [older.id]
    assert first_page.has_more is True
    assert [s.id for s in first_page.auto_paging_iter()] == [newer.id, older.id]


def test_sessions_can_be_found_by_payment_intent_and_customer_email(emulator, stripe_client):
    paid = stripe_client.v1.checkout.sessions.create(
        params=session_params(emulator, customer_email=None)
    )
    stripe_client.v1.checkout.sessions.create(params=session_params(emulator))
    pay(paid.url, email="grace@example.com")
    intent_id = stripe_client.v1.checkout.sessions.retrieve(paid.id).payment_intent

    by_intent = stripe_client.v1.checkout.sessions.list(params={"payment_intent": intent_id})
    by_email = stripe_client.v1.checkout.sessions.list(
        params={"customer_details": {"email": "grace@example.com"}}
    )

    assert [s.id for s in by_intent.data] == [paid.id]
    assert [s.id for s in by_email.data] == [paid.id]


def test_an_open_session_expires_on_request_and_loses_its_url(emulator, stripe_client):
    created = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))

    expired = stripe_client.v1.checkout.sessions.expire(created.id)

    assert expired.status == "expired"
    assert expired.url is None
    events = stripe_client.v1.events.list(params={"type": "checkout.session.expired"})
    assert [e.data.object.id for e in events.data] == [created.id]
    assert events.data[0].request.id is not None


def test_an_expired_session_cannot_be_expired_again(emulator, stripe_client):
    created = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))
    stripe_client.v1.checkout.sessions.expire(created.id)

    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.checkout.sessions.expire(created.id)

    assert caught.value.http_status == 400
    assert caught.value.error.type == "invalid_request_error"


def test_a_complete_session_cannot_be_expired(emulator, stripe_client):
    created = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))
    pay(created.url)

    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.checkout.sessions.expire(created.id)

    assert caught.value.http_status == 400
    assert stripe_client.v1.checkout.sessions.retrieve(created.id).status == "complete"


def test_a_paid_session_links_a_succeeded_payment_intent_and_charge(emulator, stripe_client):
    created = stripe_client.v1.checkout.sessions.create(
        params=session_params(emulator, customer_email=None)
    )
    pay(created.url, email="grace@example.com")

    session = stripe_client.v1.checkout.sessions.retrieve(
        created.id, params={"expand": ["payment_intent.latest_charge"]}
    )

    assert session.status == "complete"
    assert session.payment_status == "paid"
    assert session.url is None
    assert session.customer_details.email == "grace@example.com"
    intent = session.payment_intent
    assert intent.id.startswith("pi_")
    assert intent.status == "succeeded"
    assert intent.amount == 5000
    assert intent.metadata.to_dict() == {"order_id": "42"}
    charge = intent.latest_charge
    assert charge.id.startswith("ch_")
    assert (charge.amount, charge.amount_refunded, charge.refunded) == (5000, 0, False)
    assert charge.payment_intent == intent.id
    assert stripe_client.v1.payment_intents.retrieve(intent.id).latest_charge == charge.id
    assert stripe_client.v1.charges.retrieve(charge.id).paid is True


def test_a_session_past_expires_at_reads_as_expired_after_the_clock_moves(emulator, stripe_client):
    created = stripe_client.v1.checkout.sessions.create(params=session_params(emulator))

    advanced = control(emulator, "clock/advance", {"seconds": 31 * 60})
    control(emulator, "clock/advance", {"seconds": 60})
    session = stripe_client.v1.checkout.sessions.retrieve(created.id)

    assert advanced["expired"] == [created.id]
    assert session.status == "expired"
    assert session.url is None
    events = stripe_client.v1.events.list(params={"type": "checkout.session.expired"})
    assert len(events.data) == 1


def test_a_session_without_expires_at_lives_24_hours(emulator, stripe_client):
    params = session_params(emulator)
    del params["expires_at"]
    created = stripe_client.v1.checkout.sessions.create(params=params)

    control(emulator, "clock/advance", {"seconds": 23 * 3600})
    still_open = stripe_client.v1.checkout.sessions.retrieve(created.id).status
    control(emulator, "clock/advance", {"seconds": 3600})

    assert created.expires_at == created.created + 86400
    assert still_open == "open"
    assert stripe_client.v1.checkout.sessions.retrieve(created.id).status == "expired"


def test_shipping_options_add_to_the_total(emulator, stripe_client):
    shipping = {
        "shipping_rate_data": {
            "display_name": "Courier",
            "type": "fixed_amount",
            "fixed_amount": {"amount": 495, "currency": "eur"},
        }
    }
    session = stripe_client.v1.checkout.sessions.create(
        params=session_params(emulator, shipping_options=[shipping])
    )

    assert session.amount_subtotal == 5000
    assert session.amount_total == 5495
    assert session.total_details.amount_shipping == 495
    assert session.shipping_cost.amount_total == 495

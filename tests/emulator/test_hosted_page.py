"""The hosted checkout page: pay, decline, async, shipping, cancel, and closed sessions."""

from __future__ import annotations

import requests

from stripe_emulator import serve_in_thread
from tests.emulator.support import (
    CANCEL_URL,
    control,
    pay,
    session_params,
    stripe_client_for,
)


def _open_session(emulator, stripe_client, **overrides):
    return stripe_client.v1.checkout.sessions.create(params=session_params(emulator, **overrides))


def test_the_page_shows_the_items_the_total_and_that_it_is_the_emulator(emulator, stripe_client):
    session = _open_session(emulator, stripe_client)

    page = requests.get(session.url, timeout=5)

    assert page.status_code == 200
    assert "Stripe test checkout (local emulator)" in page.text
    assert "Highland Rye, Batch No. 7" in page.text
    assert "€25.00" in page.text
    assert "€50.00" in page.text
    assert 'value="ada@example.com"' in page.text
    assert 'name="card_number"' in page.text
    assert f'href="{CANCEL_URL}"' in page.text


def test_the_page_works_without_javascript_or_external_resources(emulator, stripe_client):
    page = requests.get(_open_session(emulator, stripe_client).url, timeout=5).text

    assert "<script" not in page
    assert 'method="post"' in page
    assert "https://" not in page.replace(CANCEL_URL, "")


def test_paying_redirects_to_the_success_url_with_the_session_id(emulator, stripe_client):
    session = _open_session(emulator, stripe_client)

    response = pay(session.url, card="4242 4242 4242 4242")

    assert response.status_code == 303
    assert response.headers["Location"] == (
        f"https://shop.test/checkout/success?session_id={session.id}"
    )
    paid = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert (paid.status, paid.payment_status) == ("complete", "paid")


def test_a_declined_card_shows_the_decline_and_keeps_the_session_open(emulator, stripe_client):
    session = _open_session(emulator, stripe_client)

    response = pay(session.url, card="4000 0000 0000 0002")

    assert response.status_code == 422
    assert "Your card was declined." in response.text
    still = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert (still.status, still.payment_intent) == ("open", None)
    assert pay(session.url).status_code == 303


def test_an_invalid_card_number_is_refused_on_the_form(emulator, stripe_client):
    session = _open_session(emulator, stripe_client)

    response = pay(session.url, card="4242 4242 4242 4241")

    assert response.status_code == 422
    assert "card number" in response.text
    assert stripe_client.v1.checkout.sessions.retrieve(session.id).status == "open"


def test_a_missing_email_is_refused_on_the_form(emulator, stripe_client):
    session = _open_session(emulator, stripe_client, customer_email=None)

    response = pay(session.url, email="")

    assert response.status_code == 422
    assert "valid email" in response.text


def test_shipping_details_are_collected_when_requested(emulator, stripe_client):
    session = _open_session(
        emulator, stripe_client, shipping_address_collection={"allowed_countries": ["DE", "FR"]}
    )
    page = requests.get(session.url, timeout=5).text
    address = {
        "name": "Ada Lovelace",
        "line1": "Rue de Rivoli 1",
        "line2": "",
        "city": "Paris",
        "postal_code": "75001",
        "state": "",
        "country": "FR",
    }

    response = pay(session.url, **address)

    assert 'value="Teststraße 1"' in page  # a plausible demo address is prefilled
    assert response.status_code == 303
    paid = stripe_client.v1.checkout.sessions.retrieve(session.id)
    shipping = paid.collected_information.shipping_details
    assert shipping.name == "Ada Lovelace"
    assert (shipping.address.line1, shipping.address.city) == ("Rue de Rivoli 1", "Paris")
    assert shipping.address.country == "FR"


def test_a_country_outside_the_allowed_list_is_refused(emulator, stripe_client):
    session = _open_session(
        emulator, stripe_client, shipping_address_collection={"allowed_countries": ["DE"]}
    )

    response = pay(
        session.url,
        name="Ada",
        line1="1 Main St",
        city="Boston",
        postal_code="02110",
        country="US",
    )

    assert response.status_code == 422
    assert stripe_client.v1.checkout.sessions.retrieve(session.id).status == "open"


def test_an_async_card_completes_unpaid_until_the_result_succeeds(emulator, stripe_client):
    session = _open_session(emulator, stripe_client)

    assert pay(session.url, card="4000 0025 0000 3155").status_code == 303
    pending = stripe_client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["payment_intent"]}
    )
    control(emulator, f"sessions/{session.id}/async_result", {"succeeded": True})
    settled = stripe_client.v1.checkout.sessions.retrieve(session.id)

    assert (pending.status, pending.payment_status) == ("complete", "unpaid")
    assert pending.payment_intent.status == "processing"
    assert settled.payment_status == "paid"
    types = [e.type for e in stripe_client.v1.events.list().data]
    assert types[0] == "checkout.session.async_payment_succeeded"
    assert "checkout.session.completed" in types


def test_an_async_payment_can_fail(emulator, stripe_client):
    session = _open_session(emulator, stripe_client)
    pay(session.url, card="4000 0025 0000 3155")

    control(emulator, f"sessions/{session.id}/async_result", {"succeeded": False})

    failed = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert (failed.status, failed.payment_status) == ("complete", "unpaid")
    latest = stripe_client.v1.events.list(params={"limit": 1}).data[0]
    assert latest.type == "checkout.session.async_payment_failed"


def test_an_expired_session_page_says_it_has_expired(emulator, stripe_client):
    session = _open_session(emulator, stripe_client)
    stripe_client.v1.checkout.sessions.expire(session.id)

    page = requests.get(f"{emulator.url}/checkout/{session.id}", timeout=5)
    attempt = pay(f"{emulator.url}/checkout/{session.id}")

    assert "This checkout session has expired" in page.text
    assert 'name="card_number"' not in page.text
    assert attempt.status_code == 409
    assert stripe_client.v1.checkout.sessions.retrieve(session.id).status == "expired"


def test_a_completed_session_page_says_it_is_complete(emulator, stripe_client):
    session = _open_session(emulator, stripe_client)
    pay(session.url)

    page = requests.get(f"{emulator.url}/checkout/{session.id}", timeout=5)
    second = pay(f"{emulator.url}/checkout/{session.id}")

    assert "This checkout session is complete" in page.text
    assert second.status_code == 409
    assert (
        len(stripe_client.v1.events.list(params={"type": "checkout.session.completed"}).data) == 1
    )


def test_an_unknown_session_page_is_not_found(emulator):
    assert requests.get(f"{emulator.url}/checkout/cs_test_nope", timeout=5).status_code == 404


def test_the_page_url_uses_the_public_base_url_when_given():
    with (
        serve_in_thread(public_base_url="http://shop-emulator.test:12111/") as emulator,
        stripe_client_for(emulator) as client,
    ):
        session = client.v1.checkout.sessions.create(params=session_params(emulator))

    assert session.url == f"http://shop-emulator.test:12111/checkout/{session.id}"

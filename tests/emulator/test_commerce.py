"""Shipping rates, automatic tax and promotion codes (the emulator's commerce contract).

Every call goes through the official ``stripe`` library; the customer's part (choosing a rate,
typing a code, paying) goes through the control API or the hosted page, as a person would.
Amounts: two bottles at €25.00 = €50.00 subtotal unless a test says otherwise.
"""

from __future__ import annotations

import re

import pytest
import requests
import stripe

from stripe_emulator import pricing
from tests.emulator.support import control, pay, session_params

STANDARD = {
    "shipping_rate_data": {
        "display_name": "Standard",
        "type": "fixed_amount",
        "fixed_amount": {"amount": 500, "currency": "eur"},
        "delivery_estimate": {
            "minimum": {"unit": "business_day", "value": 3},
            "maximum": {"unit": "business_day", "value": 5},
        },
    }
}
EXPRESS = {
    "shipping_rate_data": {
        "display_name": "Express",
        "fixed_amount": {"amount": 1500, "currency": "eur"},
    }
}
SHIP_TO = {"allowed_countries": ["DE", "FR", "US"]}
BERLIN = {
    "line1": "Teststraße 1",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


def _create(stripe_client, emulator, **overrides):
    return stripe_client.v1.checkout.sessions.create(params=session_params(emulator, **overrides))


def _complete(emulator, session_id: str, **body) -> dict:
    return control(emulator, f"sessions/{session_id}/complete", body)


def _coupon_and_code(stripe_client, code: str = "WINTER10", **coupon) -> tuple[str, str]:
    created = stripe_client.v1.coupons.create(params=coupon or {"percent_off": 10})
    promotion = stripe_client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": created.id}, "code": code}
    )
    return created.id, promotion.id


# --- shipping --------------------------------------------------------------------------------


def test_every_shipping_option_is_listed_and_the_first_is_selected(emulator, stripe_client):
    session = _create(stripe_client, emulator, shipping_options=[STANDARD, EXPRESS])

    assert [o.shipping_amount for o in session.shipping_options] == [500, 1500]
    assert session.shipping_cost.shipping_rate == session.shipping_options[0].shipping_rate
    assert (session.amount_subtotal, session.amount_total) == (5000, 5500)
    rate = stripe_client.v1.shipping_rates.retrieve(session.shipping_options[0].shipping_rate)
    assert (rate.display_name, rate.fixed_amount.amount, rate.type) == (
        "Standard",
        500,
        "fixed_amount",
    )
    assert rate.delivery_estimate.minimum.unit == "business_day"
    assert (rate.delivery_estimate.minimum.value, rate.delivery_estimate.maximum.value) == (3, 5)


def test_the_customers_shipping_choice_sets_the_cost_and_the_total(emulator, stripe_client):
    session = _create(
        stripe_client,
        emulator,
        shipping_options=[STANDARD, EXPRESS],
        shipping_address_collection=SHIP_TO,
    )
    express = session.shipping_options[1].shipping_rate

    _complete(emulator, session.id, shipping_rate=express, shipping_address=BERLIN)

    paid = stripe_client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["shipping_cost.shipping_rate", "payment_intent"]}
    )
    assert paid.shipping_cost.shipping_rate.display_name == "Express"
    assert (paid.shipping_cost.amount_total, paid.total_details.amount_shipping) == (1500, 1500)
    assert paid.amount_total == 6500
    assert paid.payment_intent.amount == 6500


def test_a_shipping_rate_that_is_not_offered_cannot_be_chosen(emulator, stripe_client):
    session = _create(stripe_client, emulator, shipping_options=[STANDARD])
    other = _create(stripe_client, emulator, shipping_options=[EXPRESS])

    response = requests.post(
        f"{emulator.url}/_emulator/sessions/{session.id}/complete",
        json={"shipping_rate": other.shipping_options[0].shipping_rate},
        timeout=5,
    )

    assert response.status_code == 400
    assert "not one of this Checkout Session's shipping options" in response.text
    assert stripe_client.v1.checkout.sessions.retrieve(session.id).status == "open"


def test_an_existing_shipping_rate_can_be_offered_by_id(emulator, stripe_client):
    rate = stripe_client.v1.shipping_rates.create(
        params={
            "display_name": "Pick-up at the distillery",
            "type": "fixed_amount",
            "fixed_amount": {"amount": 0, "currency": "eur"},
        }
    )

    session = _create(stripe_client, emulator, shipping_options=[{"shipping_rate": rate.id}])

    assert session.shipping_options[0].shipping_rate == rate.id
    assert session.amount_total == 5000


@pytest.mark.parametrize(
    ("option", "param"),
    [
        (
            {
                "shipping_rate_data": {
                    "display_name": "Bad",
                    "fixed_amount": {"amount": -1, "currency": "eur"},
                }
            },
            "shipping_options[0][shipping_rate_data][fixed_amount][amount]",
        ),
        (
            {
                "shipping_rate_data": {
                    "display_name": "Bad",
                    "fixed_amount": {"amount": 500, "currency": "usd"},
                }
            },
            "shipping_options[0][shipping_rate_data][fixed_amount][currency]",
        ),
        (
            {
                "shipping_rate_data": {
                    "display_name": "Backwards",
                    "fixed_amount": {"amount": 500, "currency": "eur"},
                    "delivery_estimate": {
                        "minimum": {"unit": "week", "value": 2},
                        "maximum": {"unit": "day", "value": 3},
                    },
                }
            },
            "shipping_options[0][shipping_rate_data][delivery_estimate][minimum]",
        ),
        ({"shipping_rate": "shr_missing"}, "shipping_options[0][shipping_rate]"),
    ],
    ids=["negative amount", "other currency", "minimum after maximum", "unknown rate"],
)
def test_a_bad_shipping_option_is_refused_with_its_parameter(
    emulator, stripe_client, option, param
):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        _create(stripe_client, emulator, shipping_options=[option])

    assert caught.value.http_status == 400
    assert caught.value.param == param


# --- automatic tax ---------------------------------------------------------------------------


def test_automatic_tax_waits_for_an_address_then_adds_the_countrys_test_rate(
    emulator, stripe_client
):
    session = _create(
        stripe_client,
        emulator,
        automatic_tax={"enabled": True},
        shipping_options=[STANDARD],
        shipping_address_collection=SHIP_TO,
    )
    assert session.automatic_tax.status == "requires_location_inputs"
    assert (session.total_details.amount_tax, session.amount_total) == (0, 5500)

    _complete(emulator, session.id, shipping_address=BERLIN)

    paid = stripe_client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["total_details.breakdown"]}
    )
    # DE test rate 19 % on €50.00 of goods and €5.00 of shipping, added on top.
    assert pricing.TAX_RATES_BPS["DE"] == 1900
    assert (paid.automatic_tax.status, paid.total_details.amount_tax) == ("complete", 1045)
    assert paid.shipping_cost.amount_tax == 95
    assert paid.amount_total == 5000 + 500 + 1045
    tax = paid.total_details.breakdown.taxes[0]
    assert (tax.amount, tax.rate.country, tax.rate.percentage) == (1045, "DE", 19.0)
    assert tax.taxable_amount == 5500


def test_tax_inclusive_prices_keep_the_total_and_report_the_tax_inside_it(emulator, stripe_client):
    inclusive_item = {
        "price_data": {
            "currency": "eur",
            "unit_amount": 2380,
            "tax_behavior": "inclusive",
            "product_data": {"name": "Highland Rye, Batch No. 7", "tax_code": "txcd_99999999"},
        },
        "quantity": 1,
    }
    session = _create(
        stripe_client,
        emulator,
        line_items=[inclusive_item],
        automatic_tax={"enabled": True},
        shipping_address_collection=SHIP_TO,
    )

    _complete(emulator, session.id, shipping_address=BERLIN)

    paid = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert paid.amount_total == 2380
    assert paid.total_details.amount_tax == 380  # 2380 - 2380 / 1.19
    items = stripe_client.v1.checkout.sessions.line_items.list(session.id)
    assert (items.data[0].amount_tax, items.data[0].amount_total) == (380, 2380)


def test_without_automatic_tax_no_tax_is_charged(emulator, stripe_client):
    session = _create(stripe_client, emulator, shipping_address_collection=SHIP_TO)

    _complete(emulator, session.id, shipping_address=BERLIN)

    paid = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert (paid.automatic_tax.enabled, paid.automatic_tax.status) == (False, None)
    assert (paid.total_details.amount_tax, paid.amount_total) == (0, 5000)


# --- promotion codes -------------------------------------------------------------------------


def test_a_promotion_code_lowers_the_total_and_is_recorded_on_the_session(emulator, stripe_client):
    coupon_id, promotion_id = _coupon_and_code(stripe_client)
    session = _create(
        stripe_client, emulator, allow_promotion_codes=True, shipping_options=[STANDARD]
    )

    _complete(emulator, session.id, promotion_code="winter10")

    paid = stripe_client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["total_details.breakdown", "payment_intent"]}
    )
    assert paid.total_details.amount_discount == 500  # 10 % of the goods, not of shipping
    assert paid.amount_total == 5000 - 500 + 500
    assert paid.payment_intent.amount == paid.amount_total
    assert (paid.discounts[0].coupon, paid.discounts[0].promotion_code) == (coupon_id, promotion_id)
    assert paid.total_details.breakdown.discounts[0].amount == 500
    assert stripe_client.v1.promotion_codes.retrieve(promotion_id).times_redeemed == 1
    assert stripe_client.v1.coupons.retrieve(coupon_id).times_redeemed == 1


def test_an_amount_off_coupon_is_capped_at_the_subtotal(emulator, stripe_client):
    _coupon_and_code(stripe_client, "ALLOFIT", amount_off=99_00, currency="eur")
    session = _create(stripe_client, emulator, allow_promotion_codes=True)

    completed = _complete(emulator, session.id, promotion_code="ALLOFIT")

    assert (completed["amount_total"], completed["total_details"]["amount_discount"]) == (0, 5000)
    assert completed["payment_status"] == "no_payment_required"


def test_a_discount_given_at_creation_applies_at_once(emulator, stripe_client):
    _coupon, promotion_id = _coupon_and_code(stripe_client, "PRESS")

    session = _create(stripe_client, emulator, discounts=[{"promotion_code": promotion_id}])

    assert (session.total_details.amount_discount, session.amount_total) == (500, 4500)
    assert session.discounts[0].promotion_code == promotion_id


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"allow": False}, "does not accept promotion codes"),
        ({"code": "NOSUCH"}, "This code is invalid."),
        ({"max_redemptions": 1, "spent": True}, "no longer valid"),
        ({"coupon": {"amount_off": 500, "currency": "usd"}}, "only be used with USD"),
        ({"minimum": 10_000}, "at least €100.00"),
    ],
    ids=["not allowed", "unknown code", "used up", "other currency", "below minimum"],
)
def test_a_code_that_does_not_apply_is_refused_and_the_session_stays_open(
    emulator, stripe_client, setup, message
):
    coupon = stripe_client.v1.coupons.create(params=setup.get("coupon") or {"percent_off": 10})
    restrictions = (
        {"minimum_amount": setup["minimum"], "minimum_amount_currency": "eur"}
        if "minimum" in setup
        else {}
    )
    stripe_client.v1.promotion_codes.create(
        params={
            "promotion": {"type": "coupon", "coupon": coupon.id},
            "code": "FRIENDS",
            **({"max_redemptions": setup["max_redemptions"]} if "max_redemptions" in setup else {}),
            **({"restrictions": restrictions} if restrictions else {}),
        }
    )
    if setup.get("spent"):
        first = _create(stripe_client, emulator, allow_promotion_codes=True)
        _complete(emulator, first.id, promotion_code="FRIENDS")
    session = _create(stripe_client, emulator, allow_promotion_codes=setup.get("allow", True))

    response = requests.post(
        f"{emulator.url}/_emulator/sessions/{session.id}/complete",
        json={"promotion_code": setup.get("code", "FRIENDS")},
        timeout=5,
    )

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert stripe_client.v1.checkout.sessions.retrieve(session.id).status == "open"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"percent_off": 10, "amount_off": 500, "currency": "eur"}, "amount_off"),
        ({"amount_off": 500}, "currency"),
        ({"percent_off": 120}, "percent_off"),
        ({}, "percent_off"),
    ],
    ids=["both kinds", "amount without currency", "over 100 %", "neither"],
)
def test_a_bad_coupon_is_refused_with_its_parameter(stripe_client, params, param):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.coupons.create(params=params)

    assert caught.value.param == param


def test_two_active_promotion_codes_cannot_share_a_code(stripe_client):
    _coupon_and_code(stripe_client, "TWICE")

    with pytest.raises(stripe.InvalidRequestError) as caught:
        _coupon_and_code(stripe_client, "twice")

    assert caught.value.param == "code"
    listed = stripe_client.v1.promotion_codes.list(params={"code": "TWICE"})
    assert len(listed.data) == 1


def test_a_promotion_code_for_an_unknown_coupon_is_resource_missing(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.promotion_codes.create(
            params={"promotion": {"type": "coupon", "coupon": "NOPE"}, "code": "X"}
        )

    assert caught.value.code == "resource_missing"


# --- the hosted page -------------------------------------------------------------------------


def test_the_hosted_page_offers_rates_and_a_code_and_updates_the_total(emulator, stripe_client):
    _coupon_and_code(stripe_client)
    session = _create(
        stripe_client,
        emulator,
        allow_promotion_codes=True,
        automatic_tax={"enabled": True},
        shipping_options=[STANDARD, EXPRESS],
        shipping_address_collection=SHIP_TO,
    )
    express = session.shipping_options[1].shipping_rate
    page = requests.get(session.url, timeout=5).text
    assert "Standard" in page and "3 to 5 business days" in page and "Express" in page
    assert 'name="promotion_code"' in page
    assert "VAT 19 % (DE)" in page  # the pre-filled address is in Germany

    form = {
        "name": "Ada Lovelace",
        "line1": "Rue de Rivoli 1",
        "city": "Paris",
        "postal_code": "75001",
        "country": "FR",
        "shipping_rate": express,
        "promotion_code": "WINTER10",
    }
    updated = pay(session.url, action="update", **form)
    # €50.00 less €5.00, plus €15.00 shipping, plus FR 20 % of €60.00 = €12.00: €72.00
    assert updated.status_code == 200
    assert "Discount (WINTER10)" in updated.text
    assert "&minus;€5.00" in updated.text
    assert "VAT 20 % (FR)" in updated.text
    assert re.search(r"Pay €72\.00", updated.text)

    paid = pay(session.url, **form)

    assert paid.status_code == 303
    done = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.amount_total, done.total_details.amount_tax) == (
        "complete",
        7200,
        1200,
    )


def test_the_hosted_page_shows_a_wrong_code_and_takes_no_money(emulator, stripe_client):
    session = _create(stripe_client, emulator, allow_promotion_codes=True)

    answer = pay(session.url, promotion_code="NOSUCH")

    assert answer.status_code == 422
    assert "This code is invalid." in answer.text
    assert stripe_client.v1.checkout.sessions.retrieve(session.id).status == "open"


def test_a_sessions_promotion_code_can_be_expanded_to_read_its_code(emulator, stripe_client):
    _coupon_and_code(stripe_client, "FRIENDS")
    session = _create(stripe_client, emulator, allow_promotion_codes=True)
    _complete(emulator, session.id, promotion_code="friends")

    paid = stripe_client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["discounts.promotion_code"]}
    )

    assert paid.discounts[0].promotion_code.code == "FRIENDS"
    assert paid.discounts[0].promotion_code.object == "promotion_code"

"""Parameter validation and authentication (docs/STRIPE.md §2, §7, §8)."""

from __future__ import annotations

import pytest
import requests
import stripe

from tests.emulator.support import session_params, stripe_client_for


def _create_error(client, params) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(params=params)
    assert caught.value.http_status == 400
    assert caught.value.error.type == "invalid_request_error"
    return caught.value


def _item(**price_data) -> dict:
    data = {"currency": "eur", "unit_amount": 1000, "product_data": {"name": "Rye"}}
    data.update(price_data)
    return {"price_data": data, "quantity": 1}


def test_an_unknown_top_level_parameter_is_rejected(emulator, stripe_client):
    error = _create_error(stripe_client, session_params(emulator, colour="blue"))

    assert error.code == "parameter_unknown"
    assert error.param == "colour"


def test_an_unknown_nested_parameter_is_named_by_its_bracketed_path(emulator, stripe_client):
    item = _item()
    item["price_data"]["product_data"]["colour"] = "blue"

    error = _create_error(stripe_client, session_params(emulator, line_items=[item]))

    assert error.code == "parameter_unknown"
    assert error.param == "line_items[0][price_data][product_data][colour]"


def test_payment_method_types_is_not_a_create_parameter(emulator, stripe_client):
    error = _create_error(stripe_client, session_params(emulator, payment_method_types=["card"]))

    assert error.code == "parameter_unknown"
    assert error.param == "payment_method_types"
    assert "allowed_payment_method_types" in error.user_message


def test_a_missing_currency_is_reported_with_its_bracketed_path(emulator, stripe_client):
    item = _item()
    del item["price_data"]["currency"]

    error = _create_error(stripe_client, session_params(emulator, line_items=[item]))

    assert error.code == "parameter_missing"
    assert error.param == "line_items[0][price_data][currency]"


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(29 * 60, False), (30 * 60 + 60, True), (24 * 3600 - 60, True), (24 * 3600 + 60, False)],
)
def test_expires_at_must_fall_between_30_minutes_and_24_hours(
    emulator, stripe_client, offset, accepted
):
    params = session_params(emulator, expires_at=emulator.state.now() + offset)

    if accepted:
        assert stripe_client.v1.checkout.sessions.create(params=params).status == "open"
    else:
        assert _create_error(stripe_client, params).param == "expires_at"


@pytest.mark.parametrize(
    ("line_items", "param", "code"),
    [
        ([], "line_items", "parameter_missing"),
        (
            [{**_item(), "price": "price_123"}],
            "line_items[0][price_data]",
            "parameters_exclusive",
        ),
        ([{"quantity": 1}], "line_items[0][price_data]", "parameter_missing"),
        ([{**_item(), "quantity": 0}], "line_items[0][quantity]", None),
        ([_item(currency="EUR")], "line_items[0][price_data][currency]", None),
        (
            [_item(unit_amount_decimal="10.5")],
            "line_items[0][price_data][unit_amount_decimal]",
            "parameters_exclusive",
        ),
        (
            [_item(unit_amount="ten")],
            "line_items[0][price_data][unit_amount]",
            "parameter_invalid_integer",
        ),
        ([_item()] * 101, "line_items", None),
    ],
    ids=[
        "no-items",
        "price-and-price-data",
        "neither-price-nor-price-data",
        "zero-quantity",
        "upper-case-currency",
        "unit-amount-and-decimal",
        "non-integer-amount",
        "over-100-items",
    ],
)
def test_line_item_rules_are_enforced(emulator, stripe_client, line_items, param, code):
    error = _create_error(stripe_client, session_params(emulator, line_items=line_items))

    assert error.param == param
    assert error.code == code


def test_product_and_product_data_are_mutually_exclusive(emulator, stripe_client):
    item = _item(product="prod_123")

    error = _create_error(stripe_client, session_params(emulator, line_items=[item]))

    assert error.code == "parameters_exclusive"
    assert error.param == "line_items[0][price_data][product_data]"


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"metadata": {"k" * 41: "v"}}, "metadata[" + "k" * 41 + "]"),
        ({"metadata": {"k": "v" * 501}}, "metadata[k]"),
        ({"metadata": {f"k{n}": "v" for n in range(51)}}, "metadata"),
        ({"client_reference_id": "x" * 201}, "client_reference_id"),
        ({"mode": "subscription"}, "mode"),
        ({"mode": "sometimes"}, "mode"),
        ({"success_url": "not a url"}, "success_url"),
    ],
    ids=[
        "long-metadata-key",
        "long-metadata-value",
        "too-many-metadata-keys",
        "long-client-reference-id",
        "unsupported-mode",
        "unknown-mode",
        "bad-success-url",
    ],
)
def test_top_level_limits_are_enforced(emulator, stripe_client, overrides, param):
    error = _create_error(stripe_client, session_params(emulator, **overrides))

    assert error.param == param


def test_a_missing_mode_is_a_missing_parameter(emulator, stripe_client):
    params = session_params(emulator)
    del params["mode"]

    error = _create_error(stripe_client, params)

    assert (error.code, error.param) == ("parameter_missing", "mode")


def test_a_request_without_an_api_key_gets_a_stripe_shaped_401(emulator):
    response = requests.get(f"{emulator.url}/v1/checkout/sessions", timeout=5)

    assert response.status_code == 401
    assert response.headers["Request-Id"].startswith("req_")
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "API key" in error["message"]


def test_a_live_key_is_refused_by_the_emulator(emulator):
    with (
        stripe_client_for(emulator, api_key="sk_live_123456789") as client,
        pytest.raises(stripe.AuthenticationError) as caught,
    ):
        client.v1.checkout.sessions.list()

    assert caught.value.http_status == 401
    assert "sk_live_" in caught.value.user_message


def test_an_unknown_route_is_a_stripe_shaped_404(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.raw_request("get", "/v1/customers")

    assert caught.value.http_status == 404
    assert "Unrecognized request URL" in caught.value.user_message

"""Stripe's conditional parameter rules that typed params cannot express (docs/STRIPE.md §2, §8).

The schema check (:mod:`stripe_emulator.schema`) has already run, so values have their types.
Every failure is a :class:`ParamError` (400, not stored under an idempotency key).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from stripe_emulator.errors import (
    ParamError,
    StripeAPIError,
    parameter_missing,
    resource_missing,
)

MIN_EXPIRY = 30 * 60
MAX_EXPIRY = 24 * 3600
MAX_LINE_ITEMS = 100
MAX_UNIT_AMOUNT = 99_999_999

_CURRENCY = re.compile(r"^[a-z]{3}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://[^\s]+$")
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_PROMOTION_CODE = re.compile(r"^[A-Za-z0-9-]{1,500}$")
_ESTIMATE_HOURS = {"hour": 1, "day": 24, "business_day": 24, "week": 24 * 7, "month": 24 * 30}


def no_such(kind: str, object_id: str, *, param: str, status: int = 400) -> StripeAPIError:
    """A referenced object does not exist: a validation failure, so never stored."""
    error = resource_missing(kind, object_id, param=param, status=status)
    error.store = False
    return error


def check_session_create(params: dict[str, Any], now: int) -> None:
    """Conditional rules the typed params cannot express (docs/STRIPE.md §2, §8)."""
    mode = params.get("mode")
    if mode is None:
        raise parameter_missing("mode")
    if mode != "payment":
        raise ParamError(
            f"The local Stripe emulator only supports mode=payment (got {mode}).",
            param="mode",
        )
    if params.get("ui_mode", "hosted_page") != "hosted_page":
        raise ParamError(
            "The local Stripe emulator only supports ui_mode=hosted_page.", param="ui_mode"
        )
    line_items = params.get("line_items") or []
    if not line_items:
        raise ParamError(
            "`line_items` is required in `payment` mode.",
            param="line_items",
            code="parameter_missing",
        )
    if len(line_items) > MAX_LINE_ITEMS:
        raise ParamError(
            f"You may only specify up to {MAX_LINE_ITEMS} line items in `payment` mode.",
            param="line_items",
        )
    currencies = {_check_line_item(item, f"line_items[{i}]") for i, item in enumerate(line_items)}
    if len(currencies) > 1:
        raise ParamError(
            "All line items in a Checkout Session must use the same currency.",
            param="line_items",
        )
    currency = currencies.pop()
    if "currency" in params and params["currency"] != currency:
        raise ParamError(
            "The `currency` must match the currency of the line items.", param="currency"
        )
    if "expires_at" in params:
        expires_at = params["expires_at"]
        if expires_at < now + MIN_EXPIRY:
            raise ParamError(
                "The `expires_at` timestamp must be at least 30 minutes from Checkout "
                "Session creation.",
                param="expires_at",
            )
        if expires_at > now + MAX_EXPIRY:
            raise ParamError(
                "The `expires_at` timestamp must be less than 24 hours from Checkout "
                "Session creation.",
                param="expires_at",
            )
    check_metadata(params.get("metadata", {}), "metadata")
    reference = params.get("client_reference_id")
    if reference is not None and len(reference) > 200:
        raise ParamError(
            "Invalid client_reference_id: must be at most 200 characters.",
            param="client_reference_id",
        )
    for name in ("success_url", "cancel_url"):
        url = params.get(name)
        if url is not None and (len(url) > 5000 or not _URL.match(url)):
            raise ParamError("Not a valid URL", param=name, code="url_invalid")
    email = params.get("customer_email")
    if email is not None and not _EMAIL.match(email):
        raise ParamError(
            f"Invalid email address: {email}", param="customer_email", code="email_invalid"
        )
    if "customer" in params:
        raise no_such("customer", params["customer"], param="customer", status=400)
    if params.get("discounts") and params.get("allow_promotion_codes"):
        raise ParamError(
            "You may only specify one of these parameters: allow_promotion_codes, discounts.",
            param="discounts",
            code="parameters_exclusive",
        )
    collection = params.get("shipping_address_collection")
    if collection is not None and not collection["allowed_countries"]:
        raise parameter_missing("shipping_address_collection[allowed_countries]")
    _check_shipping_options(params.get("shipping_options") or [], currency)
    intent_data = params.get("payment_intent_data", {})
    check_metadata(intent_data.get("metadata", {}), "payment_intent_data[metadata]")
    if intent_data.get("capture_method") == "manual":
        raise ParamError(
            "The local Stripe emulator does not support capture_method=manual.",
            param="payment_intent_data[capture_method]",
        )


def _check_line_item(item: dict[str, Any], path: str) -> str:
    """Check one line item; return its currency."""
    if "price" in item and "price_data" in item:
        raise ParamError(
            "You may only specify one of these parameters: price, price_data.",
            param=f"{path}[price_data]",
            code="parameters_exclusive",
        )
    if "price" in item:
        raise no_such("price", item["price"], param=f"{path}[price]", status=400)
    if "price_data" not in item:
        raise ParamError(
            "You must specify either `price` or `price_data` for each line item.",
            param=f"{path}[price_data]",
            code="parameter_missing",
        )
    if "quantity" not in item:
        raise parameter_missing(f"{path}[quantity]")
    if not 1 <= item["quantity"] <= 999_999:
        raise ParamError("Quantity must be between 1 and 999999.", param=f"{path}[quantity]")
    check_metadata(item.get("metadata", {}), f"{path}[metadata]")
    data, data_path = item["price_data"], f"{path}[price_data]"
    currency = data["currency"]
    if not _CURRENCY.match(currency):
        raise ParamError(
            f"Invalid currency: {currency}. Currencies are three lower-case letters "
            "(ISO 4217), e.g. eur.",
            param=f"{data_path}[currency]",
        )
    if "recurring" in data:
        raise ParamError(
            "You specified `payment` mode but passed a recurring price. Either switch to "
            "`subscription` mode or use only one-time prices.",
            param=f"{data_path}[recurring]",
        )
    _exactly_one(data, "product", "product_data", data_path)
    if "product" in data:
        raise no_such("product", data["product"], param=f"{data_path}[product]", status=400)
    product_data = data["product_data"]
    if len(product_data.get("images", [])) > 8:
        raise ParamError(
            "You may only specify up to 8 images.",
            param=f"{data_path}[product_data][images]",
        )
    check_metadata(product_data.get("metadata", {}), f"{data_path}[product_data][metadata]")
    _exactly_one(data, "unit_amount", "unit_amount_decimal", data_path)
    if "unit_amount" in data and not 0 <= data["unit_amount"] <= MAX_UNIT_AMOUNT:
        raise ParamError(
            f"Invalid unit_amount: must be between 0 and {MAX_UNIT_AMOUNT}.",
            param=f"{data_path}[unit_amount]",
        )
    if "unit_amount_decimal" in data:
        _check_decimal_amount(data["unit_amount_decimal"], f"{data_path}[unit_amount_decimal]")
    return currency


def _check_shipping_options(options: list[dict[str, Any]], currency: str) -> None:
    if len(options) > 5:
        raise ParamError("You may only specify up to 5 shipping options.", param="shipping_options")
    for index, option in enumerate(options):
        path = f"shipping_options[{index}]"
        _exactly_one(option, "shipping_rate", "shipping_rate_data", path)
        if "shipping_rate" in option:
            continue  # an existing rate: the state looks it up
        check_shipping_rate(option["shipping_rate_data"], f"{path}[shipping_rate_data]", currency)


def at(path: str, *names: str) -> str:
    """A parameter's name in Stripe's bracket notation: ``at("a[0]", "b")`` → ``a[0][b]``."""
    if not path:
        path, names = names[0], names[1:]
    return path + "".join(f"[{name}]" for name in names)


def check_shipping_rate(rate: dict[str, Any], rate_path: str, currency: str | None) -> None:
    """A fixed-amount rate: amount ≥ 0, in ``currency`` when given, a sane delivery estimate."""
    if rate.get("type", "fixed_amount") != "fixed_amount":
        raise ParamError("Invalid type: must be fixed_amount", param=at(rate_path, "type"))
    if "fixed_amount" not in rate:
        raise parameter_missing(at(rate_path, "fixed_amount"))
    fixed = rate["fixed_amount"]
    if currency is not None and fixed["currency"] != currency:
        raise ParamError(
            "The shipping rate currency must match the line items' currency.",
            param=at(rate_path, "fixed_amount", "currency"),
        )
    if not _CURRENCY.match(fixed["currency"]):
        raise ParamError(
            f"Invalid currency: {fixed['currency']}.",
            param=at(rate_path, "fixed_amount", "currency"),
        )
    if fixed["amount"] < 0:
        raise ParamError(
            "Invalid amount: must be at least 0.", param=at(rate_path, "fixed_amount", "amount")
        )
    if len(rate.get("display_name", "")) > 100:
        raise ParamError(
            "Invalid display_name: must be at most 100 characters.",
            param=at(rate_path, "display_name"),
        )
    estimate = rate.get("delivery_estimate") or {}
    bounds = {}
    for side in ("minimum", "maximum"):
        if side in estimate:
            bound = estimate[side]
            if bound["value"] < 1:
                raise ParamError(
                    "Invalid delivery estimate: the value must be a positive integer.",
                    param=at(rate_path, "delivery_estimate", side, "value"),
                )
            bounds[side] = bound["value"] * _ESTIMATE_HOURS[bound["unit"]]
    if len(bounds) == 2 and bounds["minimum"] > bounds["maximum"]:
        raise ParamError(
            "Invalid delivery estimate: the minimum must not be after the maximum.",
            param=at(rate_path, "delivery_estimate", "minimum"),
        )


def check_coupon(params: dict[str, Any], now: int) -> None:
    """POST /v1/coupons: exactly one of percent_off / amount_off (with a currency)."""
    _exactly_one(params, "percent_off", "amount_off", "")
    if "percent_off" in params and not 0 < params["percent_off"] <= 100:
        raise ParamError(
            "Invalid percent_off: must be greater than 0 and at most 100.", param="percent_off"
        )
    if "amount_off" in params:
        if params["amount_off"] < 1:
            raise ParamError("Invalid amount_off: must be a positive integer.", param="amount_off")
        if "currency" not in params:
            raise ParamError(
                "You must pass currency when passing amount_off.",
                param="currency",
                code="parameter_missing",
            )
        if not _CURRENCY.match(params["currency"]):
            raise ParamError(f"Invalid currency: {params['currency']}.", param="currency")
    if params.get("duration", "once") == "repeating" and "duration_in_months" not in params:
        raise parameter_missing("duration_in_months")
    if "max_redemptions" in params and params["max_redemptions"] < 1:
        raise ParamError(
            "Invalid max_redemptions: must be a positive integer.", param="max_redemptions"
        )
    if "redeem_by" in params and params["redeem_by"] <= now:
        raise ParamError("Invalid redeem_by: must be in the future.", param="redeem_by")
    if len(params.get("name", "")) > 40:
        raise ParamError("Invalid name: must be at most 40 characters.", param="name")
    if "id" in params and not _CODE.match(params["id"]):
        raise ParamError("Invalid id: use letters, digits, dashes and underscores.", param="id")
    check_metadata(params.get("metadata", {}), "metadata")


def check_promotion_code(params: dict[str, Any], now: int) -> None:
    """POST /v1/promotion_codes: a coupon promotion, a well-formed code, sane limits."""
    promotion = params.get("promotion")
    if promotion is None:
        raise parameter_missing("promotion")
    if "coupon" not in promotion:
        raise parameter_missing("promotion[coupon]")
    code = params.get("code")
    if code is not None and not _PROMOTION_CODE.match(code):
        raise ParamError(
            "Invalid code: use letters (a-z, A-Z), digits (0-9) and dashes (-), at most 500.",
            param="code",
        )
    if "expires_at" in params and params["expires_at"] <= now:
        raise ParamError("Invalid expires_at: must be in the future.", param="expires_at")
    if "max_redemptions" in params and params["max_redemptions"] < 1:
        raise ParamError(
            "Invalid max_redemptions: must be a positive integer.", param="max_redemptions"
        )
    restrictions = params.get("restrictions", {})
    if ("minimum_amount" in restrictions) != ("minimum_amount_currency" in restrictions):
        raise ParamError(
            "minimum_amount and minimum_amount_currency must be passed together.",
            param="restrictions[minimum_amount_currency]",
        )
    check_metadata(params.get("metadata", {}), "metadata")


def _exactly_one(params: dict[str, Any], first: str, second: str, path: str) -> None:
    if first in params and second in params:
        raise ParamError(
            f"You may only specify one of these parameters: {first}, {second}.",
            param=f"{path}[{second}]" if path else second,
            code="parameters_exclusive",
        )
    if first not in params and second not in params:
        raise ParamError(
            f"You must specify either `{first}` or `{second}`.",
            param=f"{path}[{first}]" if path else first,
            code="parameter_missing",
        )


def _check_decimal_amount(value: str, path: str) -> None:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ParamError(f"Invalid decimal: {value}", param=path) from None
    exponent = amount.as_tuple().exponent
    if amount < 0 or (isinstance(exponent, int) and exponent < -12):
        raise ParamError(
            "Invalid unit_amount_decimal: must be non-negative with at most 12 decimal places.",
            param=path,
        )
    if amount > MAX_UNIT_AMOUNT:
        raise ParamError(
            f"Invalid unit_amount_decimal: must be at most {MAX_UNIT_AMOUNT}.", param=path
        )


def check_metadata(metadata: dict[str, str], path: str) -> None:
    """Stripe's metadata limits: 50 keys, key ≤ 40 chars without brackets, value ≤ 500."""
    if len(metadata) > 50:
        raise ParamError("You can have at most 50 keys in metadata.", param=path)
    for key, value in metadata.items():
        if len(key) > 40 or "[" in key or "]" in key:
            raise ParamError(
                f"Invalid metadata key '{key}': keys are at most 40 characters and may not "
                "contain square brackets.",
                param=f"{path}[{key}]",
            )
        if len(value) > 500:
            raise ParamError(
                f"Invalid metadata value for '{key}': values are at most 500 characters.",
                param=f"{path}[{key}]",
            )


def clean_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """Posting a key with an empty value unsets it."""
    return {key: value for key, value in metadata.items() if value != ""}

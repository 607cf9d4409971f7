"""Builders for the JSON objects the emulator returns, shaped after Stripe's own fixtures.

Templates come from ``fixtures3.json`` in the stripe/openapi repository (checkout.session,
item, price, product, payment_intent, charge, refund, event). Fields the emulator has no use
for keep the fixture's "empty" value (``null``, ``{}``, ``[]``) so clients see every key.
"""

from __future__ import annotations

import secrets
import string
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from stripe_emulator.pricing import Totals

API_VERSION = "2026-10-28.endive"

_ALPHANUMERIC = string.ascii_letters + string.digits

#: Currencies whose amounts are whole units (docs/STRIPE.md §2).
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"}
    | {"pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
#: Hosted-page sessions have no client secret (only embedded ones do).
HOSTED_CLIENT_SECRET = None

_SYMBOLS = {"eur": "€", "usd": "$", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking id: ``prefix`` followed by ``length`` random alphanumerics."""
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def new_session_id() -> str:
    """``cs_test_`` + 58 alphanumerics: 66 characters, like the fixture's session id."""
    return new_id("cs_test_", 58)


def minor_unit_exponent(currency: str) -> int:
    currency = currency.lower()
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def format_money(amount: int, currency: str) -> str:
    """``format_money(2500, "eur")`` → ``"€25.00"``; unknown symbols → ``"25.00 SEK"``."""
    exponent = minor_unit_exponent(currency)
    value = Decimal(amount).scaleb(-exponent)
    text = f"{value:,.{exponent}f}"
    symbol = _SYMBOLS.get(currency.lower())
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"


def line_amount(price: dict[str, Any], quantity: int) -> int:
    """Line total in minor units; fractional ``unit_amount_decimal`` rounds half up."""
    if price["unit_amount"] is not None:
        return price["unit_amount"] * quantity
    exact = Decimal(price["unit_amount_decimal"]) * quantity
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def empty_address() -> dict[str, Any]:
    return {
        "city": None,
        "country": None,
        "line1": None,
        "line2": None,
        "postal_code": None,
        "state": None,
    }


def list_object(data: list[dict[str, Any]], url: str, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def product_object(product_data: dict[str, Any], now: int) -> dict[str, Any]:
    return {
        "id": new_id("prod_", 14),
        "object": "product",
        "active": True,
        "created": now,
        "default_price": None,
        "description": product_data.get("description"),
        "images": list(product_data.get("images", [])),
        "livemode": False,
        "marketing_features": [],
        "metadata": dict(product_data.get("metadata", {})),
        "name": product_data["name"],
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": product_data.get("tax_code"),
        "type": "service",
        "unit_label": product_data.get("unit_label"),
        "updated": now,
        "url": None,
    }


def price_object(price_data: dict[str, Any], product_id: str, now: int) -> dict[str, Any]:
    if "unit_amount" in price_data:
        unit_amount: int | None = price_data["unit_amount"]
        unit_amount_decimal = str(unit_amount)
    else:
        exact = Decimal(price_data["unit_amount_decimal"])
        unit_amount = int(exact) if exact == exact.to_integral_value() else None
        unit_amount_decimal = str(exact.normalize()) if unit_amount is None else str(unit_amount)
    return {
        "id": new_id("price_"),
        "object": "price",
        "active": False,
        "billing_scheme": "per_unit",
        "created": now,
        "currency": price_data["currency"],
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": product_id,
        "recurring": None,
        "tax_behavior": price_data.get("tax_behavior", "unspecified"),
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": unit_amount_decimal,
    }


def line_item_object(
    item: dict[str, Any], price: dict[str, Any], description: str
) -> dict[str, Any]:
    amount = line_amount(price, item["quantity"])
    return {
        "id": new_id("li_"),
        "object": "item",
        "adjustable_quantity": item.get("adjustable_quantity"),
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": price["currency"],
        "description": description,
        "metadata": dict(item.get("metadata", {})),
        "price": price,
        "quantity": item["quantity"],
    }


def session_object(
    params: dict[str, Any],
    *,
    session_id: str,
    url: str,
    now: int,
    currency: str,
    totals: Totals,
    shipping_options: list[dict[str, Any]],
    discounts: list[dict[str, Any]],
) -> dict[str, Any]:
    """A freshly created, open Checkout Session (payment mode, hosted page).

    ``shipping_options`` are ``{"shipping_amount", "shipping_rate"}``, the first one selected;
    amounts come from ``totals`` (see :func:`apply_totals`).
    """
    automatic_tax = params.get("automatic_tax", {}).get("enabled", False)
    consent_collection = params.get("consent_collection")
    customer_email = params.get("customer_email")
    return {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": params.get("adaptive_pricing", {}).get("enabled", False)},
        "after_expiration": _after_expiration(params.get("after_expiration")),
        "allow_promotion_codes": params.get("allow_promotion_codes"),
        "amount_subtotal": totals.subtotal,
        "amount_total": totals.total,
        "automatic_tax": {
            "enabled": automatic_tax,
            "liability": {"type": "self"} if automatic_tax else None,
            "provider": "stripe" if automatic_tax else None,
            "status": None,
        },
        "billing_address_collection": params.get("billing_address_collection"),
        "cancel_url": params.get("cancel_url"),
        "client_reference_id": params.get("client_reference_id"),
        "client_secret": HOSTED_CLIENT_SECRET,
        "collected_information": {
            "business_name": None,
            "individual_name": None,
            "shipping_details": None,
        },
        "consent": {"promotions": None, "terms_of_service": None} if consent_collection else None,
        "consent_collection": _consent_collection(consent_collection),
        "created": now,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": None,
        "customer_account": None,
        "customer_creation": params.get("customer_creation", "if_required"),
        "customer_details": _customer_details(customer_email) if customer_email else None,
        "customer_email": customer_email,
        "discounts": discounts,
        "expires_at": params.get("expires_at", now + 86400),
        "integration_identifier": params.get("integration_identifier"),
        "invoice": None,
        "invoice_creation": {
            "enabled": False,
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": None,
                "footer": None,
                "issuer": None,
                "metadata": {},
                "rendering_options": None,
            },
        },
        "livemode": False,
        "locale": params.get("locale"),
        "managed_payments": None,
        "metadata": dict(params.get("metadata", {})),
        "mode": "payment",
        "origin_context": params.get("origin_context"),
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": params.get("payment_method_collection", "if_required"),
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": list(params.get("allowed_payment_method_types") or ["card"]),
        "payment_status": "unpaid",
        "permissions": None,
        "phone_number_collection": {
            "enabled": params.get("phone_number_collection", {}).get("enabled", False)
        },
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": params.get("shipping_address_collection"),
        "shipping_cost": None,
        "shipping_options": shipping_options,
        "status": "open",
        "submit_type": params.get("submit_type"),
        "subscription": None,
        "success_url": params.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page",
        "url": url,
        "wallet_options": None,
    }


def apply_totals(
    session: dict[str, Any], totals: Totals, shipping_rate: str | None, *, located: bool
) -> None:
    """Write ``totals`` into ``session``: amounts, ``total_details``, ``shipping_cost`` and the
    automatic-tax status (``requires_location_inputs`` until an address is known)."""
    session["amount_subtotal"] = totals.subtotal
    session["amount_total"] = totals.total
    session["total_details"] = {
        "amount_discount": totals.discount,
        "amount_shipping": totals.shipping,
        "amount_tax": totals.tax,
    }
    session["shipping_cost"] = (
        {
            "amount_subtotal": totals.shipping,
            "amount_tax": totals.shipping_tax,
            "amount_total": totals.shipping_total,
            "shipping_rate": shipping_rate,
        }
        if shipping_rate
        else None
    )
    if session["automatic_tax"]["enabled"]:
        session["automatic_tax"]["status"] = "complete" if located else "requires_location_inputs"


def _after_expiration(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if not value:
        return None
    recovery = value.get("recovery", {})
    return {
        "recovery": {
            "allow_promotion_codes": recovery.get("allow_promotion_codes", False),
            "enabled": recovery.get("enabled", False),
            "expires_at": None,
            "url": None,
        }
    }


def _consent_collection(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if not value:
        return None
    return {
        "payment_method_reuse_agreement": value.get("payment_method_reuse_agreement"),
        "promotions": value.get("promotions"),
        "terms_of_service": value.get("terms_of_service"),
    }


def _customer_details(email: str | None) -> dict[str, Any]:
    return {
        "address": empty_address(),
        "business_name": None,
        "email": email,
        "individual_name": None,
        "name": None,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }


def customer_details(
    email: str, name: str | None, address: dict[str, Any] | None
) -> dict[str, Any]:
    details = _customer_details(email)
    details["name"] = name
    if address:
        details["address"] = dict(address)
    return details


def payment_intent_object(
    *,
    amount: int,
    currency: str,
    now: int,
    payment_intent_data: dict[str, Any],
    payment_method: str,
    status: str,
    shipping: dict[str, Any] | None,
) -> dict[str, Any]:
    pi_id = new_id("pi_")
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount if status == "succeeded" else 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": payment_intent_data.get("capture_method", "automatic_async"),
        "client_secret": f"{pi_id}_secret_{new_id('', 25)}",
        "confirmation_method": "automatic",
        "created": now,
        "currency": currency,
        "customer": None,
        "customer_account": None,
        "description": payment_intent_data.get("description"),
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": dict(payment_intent_data.get("metadata", {})),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": payment_intent_data.get("receipt_email"),
        "review": None,
        "setup_future_usage": None,
        "shipping": shipping,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": payment_intent_data.get("statement_descriptor_suffix"),
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def charge_object(
    *,
    payment_intent: dict[str, Any],
    now: int,
    card_brand: str,
    card_last4: str,
    billing_details: dict[str, Any],
    status: str,
) -> dict[str, Any]:
    amount = payment_intent["amount"]
    succeeded = status == "succeeded"
    return {
        "id": new_id("ch_"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if succeeded else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": new_id("txn_") if succeeded else None,
        "billing_details": billing_details,
        "calculated_statement_descriptor": "SMALL BATCH",
        "captured": succeeded,
        "created": now,
        "currency": payment_intent["currency"],
        "customer": None,
        "description": payment_intent["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        "metadata": dict(payment_intent["metadata"]),
        "on_behalf_of": None,
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 12,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": succeeded,
        "payment_intent": payment_intent["id"],
        "payment_method": payment_intent["payment_method"],
        "payment_method_details": {
            "card": {
                "amount_authorized": amount,
                "brand": card_brand,
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": None,
                    "cvc_check": "pass",
                },
                "country": "US",
                "exp_month": 12,
                "exp_year": 2034,
                "fingerprint": new_id("", 16),
                "funding": "credit",
                "last4": card_last4,
                "network": card_brand,
                "network_transaction_id": new_id("", 15),
                "three_d_secure": None,
                "wallet": None,
            },
            "type": "card",
        },
        "receipt_email": payment_intent["receipt_email"],
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "review": None,
        "shipping": payment_intent["shipping"],
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": payment_intent["statement_descriptor_suffix"],
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def refund_object(
    *, charge: dict[str, Any], amount: int, now: int, params: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": new_id("re_"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": new_id("txn_"),
        "charge": charge["id"],
        "created": now,
        "currency": charge["currency"],
        "customer": None,
        "customer_account": None,
        "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "metadata": dict(params.get("metadata", {})),
        "payment_intent": charge["payment_intent"],
        "payment_method": charge["payment_method"],
        "reason": params.get("reason"),
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }


def event_object(
    event_type: str,
    snapshot: dict[str, Any],
    *,
    now: int,
    pending_webhooks: int,
    request: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": new_id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": now,
        "data": {"object": snapshot},
        "livemode": False,
        "pending_webhooks": pending_webhooks,
        "request": request,
        "type": event_type,
    }


def shipping_rate_object(data: dict[str, Any], now: int) -> dict[str, Any]:
    """A ``shipping_rate`` from ``shipping_rate_data`` (or ``POST /v1/shipping_rates``)."""
    fixed = data.get("fixed_amount") or {}
    return {
        "id": new_id("shr_"),
        "object": "shipping_rate",
        "active": True,
        "created": now,
        "delivery_estimate": data.get("delivery_estimate"),
        "display_name": data.get("display_name"),
        "fixed_amount": {"amount": fixed.get("amount", 0), "currency": fixed.get("currency")},
        "livemode": False,
        "metadata": dict(data.get("metadata", {})),
        "tax_behavior": data.get("tax_behavior", "unspecified"),
        "tax_code": data.get("tax_code"),
        "type": data.get("type", "fixed_amount"),
    }


def coupon_object(params: dict[str, Any], now: int) -> dict[str, Any]:
    percent_off = params.get("percent_off")
    return {
        "id": params.get("id") or new_id("", 8).upper(),
        "object": "coupon",
        "amount_off": params.get("amount_off"),
        "created": now,
        "currency": params.get("currency"),
        "duration": params.get("duration", "once"),
        "duration_in_months": params.get("duration_in_months"),
        "livemode": False,
        "max_redemptions": params.get("max_redemptions"),
        "metadata": dict(params.get("metadata", {})),
        "name": params.get("name"),
        "percent_off": float(percent_off) if percent_off is not None else None,
        "redeem_by": params.get("redeem_by"),
        "times_redeemed": 0,
        "valid": True,
    }


def promotion_code_object(params: dict[str, Any], code: str, now: int) -> dict[str, Any]:
    restrictions = params.get("restrictions", {})
    return {
        "id": new_id("promo_"),
        "object": "promotion_code",
        "active": params.get("active", True),
        "code": code,
        "created": now,
        "customer": None,
        "customer_account": None,
        "expires_at": params.get("expires_at"),
        "livemode": False,
        "max_redemptions": params.get("max_redemptions"),
        "metadata": dict(params.get("metadata", {})),
        "promotion": {"coupon": params["promotion"]["coupon"], "type": "coupon"},
        "restrictions": {
            "currency_options": {},
            "first_time_transaction": restrictions.get("first_time_transaction", False),
            "minimum_amount": restrictions.get("minimum_amount"),
            "minimum_amount_currency": restrictions.get("minimum_amount_currency"),
        },
        "times_redeemed": 0,
    }


def tax_rate_object(country: str, percentage_bps: int, display_name: str, now: int) -> dict:
    """The test rate a breakdown names (``total_details.breakdown.taxes[].rate``)."""
    return {
        "id": f"txr_test_{country.lower()}",
        "object": "tax_rate",
        "active": True,
        "country": country,
        "created": now,
        "description": "Local emulator test rate",
        "display_name": display_name,
        "effective_percentage": percentage_bps / 100,
        "flat_amount": None,
        "inclusive": False,
        "jurisdiction": country,
        "jurisdiction_level": "country",
        "livemode": False,
        "metadata": {},
        "percentage": percentage_bps / 100,
        "rate_type": "percentage",
        "state": None,
        "tax_type": "sales_tax" if display_name == "Sales tax" else "vat",
    }

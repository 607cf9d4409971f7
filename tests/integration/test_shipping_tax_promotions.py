"""Shipping rates, Stripe Tax and promotion codes through Checkout (issue 19), on SQLite and
PostgreSQL, against the emulator through the official stripe library.

The order for these tests: two bottles at €64.00 of a batch whose maker ships DE and FR at
€9.00 (free from €200.00) and lets Stripe add tax; the drop accepts promotion codes.
"""

from __future__ import annotations

import pytest

from shop import clock, inventory, orders, shipping_rates
from shop.errors import InvalidInput
from shop.extensions import db
from shop.models import Order, ShippingRate
from shop.models.order import CANCELLED, PAID
from shop.models.user import TAX_EXCLUSIVE, TAX_INCLUSIVE
from testkit import factories
from tests.support.stripe import live_batch, stripe_settings

BERLIN = {"line1": "Teststraße 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


def _rye(*, tax_mode: str = TAX_EXCLUSIVE, free_above: int | None = 20_000, tax_code=None):
    maker = factories.make_maker()
    maker.tax_mode = tax_mode
    drop = factories.make_drop(maker, opens_at=clock.now().replace(year=2020), closes_at=None)
    drop.allow_promotion_codes = True
    batch = live_batch(drop=drop, price=6400, currency="eur", limit=4)
    batch.tax_code = tax_code
    db.session.add(
        ShippingRate(
            maker_id=maker.id,
            name="Europe",
            countries="DE,FR",
            amount=900,
            currency="eur",
            free_above=free_above,
            min_days=3,
            max_days=5,
        )
    )
    db.session.commit()
    return batch


def _held_for(batch, country: str, quantity: int = 2) -> Order:
    order = inventory.hold(
        batch.id,
        quantity,
        customer=factories.make_customer(),
        now=clock.now(),
        ship_country=country,
    )
    db.session.commit()
    return order


def _checkout(order: Order) -> Order:
    orders.continue_checkout(order, now=clock.now())
    return db.session.get(Order, order.id, populate_existing=True)


def _promotion_code(emulator, code: str, **coupon) -> None:
    client = emulator.client()
    made = client.v1.coupons.create(params=coupon or {"percent_off": 10})
    client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": made.id}, "code": code}
    )


def test_checkout_gets_the_quoted_rate_the_one_country_tax_and_promotion_codes(app, emulator):
    order = _checkout(_held_for(_rye(tax_code="txcd_99999999"), "DE"))

    session = emulator.session(order.checkout_session_id)

    assert (order.shipping_rate_name, order.shipping_amount) == ("Europe", 900)
    assert session["shipping_address_collection"]["allowed_countries"] == ["DE"]
    assert [o["shipping_amount"] for o in session["shipping_options"]] == [900]
    assert session["automatic_tax"]["enabled"] is True
    assert session["allow_promotion_codes"] is True
    assert (session["amount_subtotal"], session["amount_total"]) == (12_800, 13_700)
    items = emulator.get(f"/checkout/sessions/{order.checkout_session_id}/line_items")
    assert items["data"][0]["price"]["tax_behavior"] == "exclusive"


def test_a_paid_session_with_shipping_tax_and_a_discount_fulfils_with_stripes_amounts(
    app, emulator
):
    _promotion_code(emulator, "WINTER10")
    order = _checkout(_held_for(_rye(), "DE"))
    emulator.complete(order.checkout_session_id, promotion_code="winter10", shipping_address=BERLIN)

    outcome = orders.fulfil(order.checkout_session_id, now=clock.now())

    paid = db.session.get(Order, order.id, populate_existing=True)
    assert outcome == orders.FULFILLED and paid.state == PAID
    # goods 128.00 less 12.80, plus shipping 9.00 = 124.20; DE test VAT 19 % = 23.60 (rounded)
    assert (paid.amount, paid.discount_amount, paid.shipping_amount) == (12_800, 1_280, 900)
    assert paid.tax_amount == 2_360
    assert paid.amount_total == 12_800 - 1_280 + 900 + 2_360
    assert paid.promotion_code == "WINTER10"
    assert [unit.serial for unit in paid.units] == [1, 2]  # numbering is unaffected


def test_tax_inclusive_prices_charge_the_price_and_record_the_tax_inside_it(app, emulator):
    order = _checkout(_held_for(_rye(tax_mode=TAX_INCLUSIVE), "DE", quantity=1))
    emulator.complete(order.checkout_session_id, shipping_address=BERLIN)

    orders.fulfil(order.checkout_session_id, now=clock.now())

    paid = db.session.get(Order, order.id, populate_existing=True)
    assert paid.amount_total == 6_400 + 900
    assert paid.tax_amount == 1_166  # 19 % inside 64.00 (1 022) and inside 9.00 (144)


def test_shipping_is_free_from_the_rates_threshold(app, emulator):
    order = _checkout(_held_for(_rye(free_above=12_800), "FR"))

    assert (order.shipping_rate_name, order.shipping_amount) == ("Europe", 0)
    session = emulator.session(order.checkout_session_id)
    assert session["shipping_cost"]["amount_total"] == 0


def test_a_country_no_rate_covers_ends_the_hold_with_the_reason(app, emulator):
    order = _held_for(_rye(), "US")

    with pytest.raises(InvalidInput, match=r"can't ship this batch to United States"):
        orders.continue_checkout(order, now=clock.now())

    released = db.session.get(Order, order.id, populate_existing=True)
    assert released.state == CANCELLED and released.checkout_session_id is None
    assert released.batch.held == 0


def test_without_rates_or_tax_checkout_is_as_before(app, emulator):
    batch = live_batch(price=2500, currency="eur")
    db.session.commit()
    order = _checkout(_held_for(batch, "DE", quantity=1))

    session = emulator.session(order.checkout_session_id)

    assert order.shipping_rate_name == "Free shipping" and order.shipping_amount == 0
    assert session["automatic_tax"]["enabled"] is False
    assert session["allow_promotion_codes"] is None
    assert session["amount_total"] == 2500


def test_a_rate_in_another_currency_than_the_batch_is_refused(app):
    batch = live_batch(price=2500, currency="eur")
    db.session.commit()
    details = shipping_rates.RateDetails("UK", "GB", 500, "gbp")

    with pytest.raises(InvalidInput, match="same currency"):
        shipping_rates.save_rate(
            batch.product.maker, details, batch=batch, actor=batch.product.maker
        )
    assert db.session.query(ShippingRate).count() == 0

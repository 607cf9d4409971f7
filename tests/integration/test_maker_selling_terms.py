"""What a maker sets for selling real goods, through the console's views: where a batch ships,
its minimum age and tax code, the shop's tax mode, promotion codes on a drop, and shipping
rates per zone — each bad value refused with a message and nothing changed."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import Batch, Drop, ShippingRate, User
from shop.models.user import TAX_EXCLUSIVE
from testkit.factories import make_batch, make_maker, make_product
from tests.support.console import browser, new_batch

RATE = {
    "name": "Europe",
    "countries": "de, fr gb",
    "amount": "38.00",
    "currency": "usd",
    "free_above": "",
    "min_days": "3",
    "max_days": "7",
    "batch": "0",
}


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_a_batch_keeps_where_it_ships_its_minimum_age_and_tax_code(console, maker):
    product = make_product(maker)

    response = new_batch(
        console, product, ships_to="us, gb DE", minimum_age="21", tax_code="txcd_30070000"
    )

    assert response.status_code == 303
    batch = db.session.scalar(select(Batch))
    assert (batch.ships_to, batch.minimum_age, batch.tax_code) == ("DE,GB,US", 21, "txcd_30070000")
    page = _text(console.get(f"/maker/batches/{batch.id}"))
    assert 'value="DE,GB,US"' in page and 'value="21"' in page


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ships_to": "DE, XX"}, "XX is not a country code"),
        ({"ships_to": "Germany"}, "is not a country code"),
        ({"minimum_age": "0"}, "Between 1 and 99"),
        ({"minimum_age": "150"}, "Between 1 and 99"),
        ({"minimum_age": "twenty"}, "Enter a whole number"),
        ({"tax_code": "spirits"}, "txcd_99999999"),
    ],
)
def test_bad_selling_terms_on_a_batch_are_refused_with_a_message(console, maker, changes, message):
    product = make_product(maker)

    response = new_batch(console, product, **changes)

    assert response.status_code == 422
    assert message in _text(response)
    assert db.session.scalar(select(func.count()).select_from(Batch)) == 0


def test_a_maker_turns_on_stripe_tax_in_settings(console, maker):
    response = console.form(
        "/maker/settings",
        {"display_name": maker.display_name, "timezone": "UTC", "tax_mode": TAX_EXCLUSIVE},
    )

    assert response.status_code == 303
    assert db.session.get(User, maker.id).tax_mode == TAX_EXCLUSIVE


def test_an_unknown_tax_mode_is_refused(console, maker):
    response = console.form(
        "/maker/settings", {"display_name": "X", "timezone": "UTC", "tax_mode": "evade"}
    )

    assert response.status_code == 422
    assert db.session.get(User, maker.id).tax_mode == "off"


def test_a_drop_accepts_promotion_codes_when_its_maker_says_so(console, maker):
    response = console.form("/maker/drops/new", {"title": "Winter", "allow_promotion_codes": "y"})

    assert response.status_code == 303
    assert db.session.scalar(select(Drop)).allow_promotion_codes is True
    drop = db.session.scalar(select(Drop))
    console.form(f"/maker/drops/{drop.id}/edit", {"title": "Winter"})
    assert db.session.get(Drop, drop.id, populate_existing=True).allow_promotion_codes is False


def test_a_maker_adds_edits_and_removes_a_shipping_rate(console, maker):
    added = console.form("/maker/shipping", RATE)

    assert added.status_code == 303
    rate = db.session.scalar(select(ShippingRate))
    assert (rate.countries, rate.amount, rate.min_days, rate.max_days) == ("DE,FR,GB", 3800, 3, 7)
    assert "Europe" in _text(console.get("/maker/shipping"))

    edited = console.form(
        f"/maker/shipping/{rate.id}", {**RATE, "amount": "0", "free_above": "250.00"}
    )
    assert edited.status_code == 303
    rate = db.session.get(ShippingRate, rate.id, populate_existing=True)
    assert (rate.amount, rate.free_above) == (0, 25000)

    removed = console.form(f"/maker/shipping/{rate.id}/delete")
    assert removed.status_code == 303
    assert db.session.scalar(select(func.count()).select_from(ShippingRate)) == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": "-5"}, "Enter an amount like"),
        ({"amount": "twelve"}, "Enter an amount like"),
        ({"countries": "DE, ZZ"}, "ZZ is not a country code"),
        ({"min_days": "9", "max_days": "2"}, "from a minimum to a maximum"),
        ({"name": ""}, "Name the rate"),
    ],
)
def test_a_bad_shipping_rate_is_refused_with_a_message(console, maker, changes, message):
    response = console.form("/maker/shipping", {**RATE, **changes})

    assert response.status_code == 422
    assert message in _text(response)
    assert db.session.scalar(select(func.count()).select_from(ShippingRate)) == 0


def test_a_batch_rate_in_another_currency_than_the_batch_is_refused(console, maker):
    batch = make_batch(product=make_product(maker), currency="eur")
    db.session.commit()

    response = console.form("/maker/shipping", {**RATE, "batch": str(batch.id)})

    assert response.status_code == 422
    assert "priced in EUR" in _text(response)
    assert db.session.scalar(select(func.count()).select_from(ShippingRate)) == 0


def test_another_makers_shipping_rate_is_a_404(app, console):
    other = make_maker()
    db.session.commit()
    theirs = browser(app, other)
    theirs.form("/maker/shipping", RATE)
    rate = db.session.scalar(select(ShippingRate))

    assert console.get(f"/maker/shipping/{rate.id}").status_code == 404
    assert console.form(f"/maker/shipping/{rate.id}/delete").status_code == 404
    assert db.session.scalar(select(func.count()).select_from(ShippingRate)) == 1

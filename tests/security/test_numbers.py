"""No 500s from numbers: other scripts' digits, prices beyond any real price, and a
price x quantity past the database's INTEGER — each a clear 4xx or a correct answer."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from shop import money
from shop.extensions import db
from shop.models import Batch, Order
from testkit.factories import make_customer, make_product
from tests.support.console import new_batch
from tests.support.stripe import hold, live_batch, sign_in, stripe_settings


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


@pytest.mark.parametrize(
    "digits", ["\u00b2", "\u0663", "\uff11", "99999999999999999999", "-1", "1e3"]
)
@pytest.mark.parametrize(
    "path", ["/maker/drops/new?batch={}", "/maker/orders?page={}", "/maker/orders?drop={}"]
)
def test_a_query_number_in_other_digits_or_out_of_range_is_ignored_not_a_500(console, path, digits):
    assert console.get(path.format(digits)).status_code == 200


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"unit_price": "1000000.00"}, "The highest price is $999,999.99."),
        ({"unit_price": "99999999999999999999"}, "The highest price is $999,999.99."),
        ({"unit_price": "١٢"}, "Enter a price like"),
        ({"unit_price": "1e3"}, "Enter a price like"),
        ({"unit_price": "100000000", "currency": "jpy"}, "The highest price is ¥99,999,999."),
        ({"number": "99999999999"}, "Enter a whole number in digits 0-9."),
        ({"number": "1000001"}, "Number must be between 1 and 1000000"),
        ({"number": "٣"}, "Enter a whole number in digits 0-9."),
        ({"edition_size": "\uff11\uff10"}, "Enter a whole number in digits 0-9."),
        ({"per_customer_limit": "4294967296"}, "Enter a whole number in digits 0-9."),
    ],
)
def test_a_number_beyond_range_or_in_other_digits_is_refused_with_a_reason(
    console, maker, changes, message
):
    product = make_product(maker)
    response = new_batch(console, product, **changes)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Batch)) == 0


def test_the_highest_price_is_accepted(console, maker):
    product = make_product(maker)
    response = new_batch(console, product, unit_price="999,999.99")
    assert response.status_code == 303
    assert db.session.scalar(select(Batch.price)) == money.MAX_PRICE


def test_the_database_refuses_a_price_above_the_maximum(app):
    batch = live_batch(price=100)
    db.session.commit()
    with pytest.raises(IntegrityError):
        db.session.execute(
            text("UPDATE batches SET price = :p WHERE id = :id"),
            {"p": money.MAX_PRICE + 1, "id": batch.id},
        )
        db.session.flush()
    db.session.rollback()


def test_holding_units_whose_amount_passes_the_database_integer_works(app, client):
    batch = live_batch(edition_size=100, limit=50, price=money.MAX_PRICE)
    customer = make_customer()
    db.session.commit()
    csrf = sign_in(client, customer)

    response = hold(client, batch.id, 30, csrf=csrf)

    assert response.status_code == 303
    db.session.rollback()
    order = db.session.scalars(select(Order)).one()
    assert order.amount == 30 * money.MAX_PRICE > 2**31 - 1

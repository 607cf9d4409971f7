"""Who may buy a batch: its minimum age and the countries it ships to (issue 19, items 2 and 3),
decided by the hold itself on SQLite and PostgreSQL, through the real buy view.

The rye here is 21+ and ships only to DE, FR, GB and US; the buyer confirms a date of birth
and picks a destination on the drop page, and the order keeps both.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from shop import clock, inventory
from shop.errors import AgeRestricted, CannotShipThere
from shop.extensions import db
from shop.models import Batch, Order, ShippingRate
from testkit import factories
from tests.support.stripe import live_batch, sign_in, stripe_settings


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


@pytest.fixture
def rye(app):
    batch = live_batch(edition_size=10, limit=2, price=6400)
    batch.minimum_age = 21
    batch.ships_to = "DE,FR,GB,US"
    db.session.commit()
    return batch


@pytest.fixture
def buyer(app, client):
    customer = factories.make_customer()
    db.session.commit()
    return customer, sign_in(client, customer)


def _years_ago(years: int, *, days: int = 0) -> str:
    today = clock.now().date()
    try:
        born = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        born = today.replace(year=today.year - years, day=28)
    return (born + timedelta(days=days)).isoformat()


def _buy(client, batch, csrf, **fields):
    return client.post(
        f"/checkout/batches/{batch.id}", data={"quantity": "1", "csrf_token": csrf, **fields}
    )


def _nothing_held(batch) -> None:
    db.session.expire_all()
    assert db.session.get(Batch, batch.id).held == 0
    assert db.session.scalar(select(func.count()).select_from(Order)) == 0


def test_a_buyer_of_age_holds_the_unit_and_the_order_keeps_the_birth_date_and_country(
    client, rye, buyer
):
    _, csrf = buyer
    answer = _buy(client, rye, csrf, birth_date=_years_ago(21), ship_country="fr")

    assert answer.status_code == 303
    order = db.session.scalar(select(Order))
    assert order.birth_date == date.fromisoformat(_years_ago(21))
    assert order.ship_country == "FR"
    assert db.session.get(Batch, rye.id).held == 1


def test_a_buyer_one_day_short_of_the_minimum_age_is_refused_and_nothing_is_held(
    client, rye, buyer
):
    _, csrf = buyer
    answer = _buy(client, rye, csrf, birth_date=_years_ago(21, days=1), ship_country="DE")

    assert answer.status_code == 403
    assert "only sold to buyers aged 21 or over" in answer.get_data(as_text=True)
    _nothing_held(rye)


def test_an_age_restricted_batch_needs_a_date_of_birth(client, rye, buyer):
    _, csrf = buyer
    answer = _buy(client, rye, csrf, ship_country="DE")

    assert answer.status_code == 403
    assert "confirm your date of birth" in answer.get_data(as_text=True)
    _nothing_held(rye)


@pytest.mark.parametrize(
    ("born", "message"),
    [
        ("31/12/1990", "as a date"),
        ("2990-01-01", "real date of birth"),
        ("1990-02-30", "as a date"),
    ],
    ids=["not a date", "in the future", "no such day"],
)
def test_a_date_of_birth_that_makes_no_sense_is_a_clear_422(client, rye, buyer, born, message):
    _, csrf = buyer
    answer = _buy(client, rye, csrf, birth_date=born, ship_country="DE")

    assert answer.status_code == 422
    assert message in answer.get_data(as_text=True)
    _nothing_held(rye)


def test_a_destination_off_the_batch_list_is_refused_by_name(client, rye, buyer):
    _, csrf = buyer
    answer = _buy(client, rye, csrf, birth_date=_years_ago(30), ship_country="IT")

    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "ships only to" in page and "Italy" in page and "Germany" in page
    _nothing_held(rye)


def test_a_batch_with_a_ship_to_list_needs_a_destination(client, rye, buyer):
    _, csrf = buyer
    answer = _buy(client, rye, csrf, birth_date=_years_ago(30))

    assert answer.status_code == 422
    assert "choose where it goes" in answer.get_data(as_text=True)
    _nothing_held(rye)


@pytest.mark.parametrize("country", ["XX", "Germany", "D"])
def test_a_country_that_does_not_exist_is_a_clear_422(client, rye, buyer, country):
    _, csrf = buyer
    answer = _buy(client, rye, csrf, birth_date=_years_ago(30), ship_country=country)

    assert answer.status_code == 422
    assert "Choose the country the order ships to" in answer.get_data(as_text=True)
    _nothing_held(rye)


def test_the_age_and_the_destination_are_answered_as_json_with_a_reason(client, rye, buyer):
    _, csrf = buyer
    answer = client.post(
        f"/checkout/batches/{rye.id}",
        data={"quantity": "1", "csrf_token": csrf, "birth_date": _years_ago(18)},
        headers={"Accept": "application/json"},
    )

    assert answer.status_code == 403
    assert answer.get_json()["error"]["code"] == "age_restricted"


def test_an_unrestricted_batch_needs_neither(client, buyer):
    _, csrf = buyer
    batch = live_batch(edition_size=5, limit=2)
    db.session.commit()

    assert _buy(client, batch, csrf).status_code == 303
    assert db.session.scalar(select(Order)).birth_date is None


def test_the_service_refuses_with_domain_errors_that_say_what_the_batch_needs(app, rye):
    customer = factories.make_customer()
    db.session.commit()
    now = clock.now()
    with pytest.raises(AgeRestricted) as too_young:
        inventory.hold(
            rye.id,
            1,
            customer=customer,
            now=now,
            birth_date=date(now.year - 20, 1, 1),
            ship_country="DE",
        )
    db.session.rollback()
    with pytest.raises(CannotShipThere) as elsewhere:
        inventory.hold(
            rye.id, 1, customer=customer, now=now, birth_date=date(1980, 1, 1), ship_country="JP"
        )
    db.session.rollback()

    assert too_young.value.minimum_age == 21
    assert elsewhere.value.countries == ["Germany", "France", "United Kingdom", "United States"]
    _nothing_held(rye)


@pytest.fixture
def priced_by_country(app):
    batch = live_batch(edition_size=5, limit=2, price=6400, currency="eur")
    db.session.add(
        ShippingRate(
            maker_id=batch.product.maker_id,
            name="Europe",
            countries="DE,FR",
            amount=900,
            currency="eur",
        )
    )
    db.session.commit()
    return batch


def test_shipping_priced_by_country_is_asked_after_the_hold_and_before_checkout(
    client, buyer, priced_by_country, emulator
):
    _, csrf = buyer
    held = _buy(client, priced_by_country, csrf)
    asked = client.get(held.headers["Location"])

    assert asked.status_code == 200
    page = asked.get_data(as_text=True)
    assert "Where does it ship?" in page
    assert '<option value="DE">Germany</option>' in page and 'value="US"' not in page
    order = db.session.scalar(select(Order))
    assert order.checkout_session_id is None  # Stripe not asked yet

    chosen = client.post(
        f"/checkout/orders/{order.public_id}/destination",
        data={"csrf_token": csrf, "ship_country": "de"},
    )
    assert chosen.status_code == 303
    paying = client.get(chosen.headers["Location"])
    assert paying.status_code == 303
    db.session.expire_all()
    order = db.session.get(Order, order.id)
    assert (order.ship_country, order.shipping_rate_name, order.shipping_amount) == (
        "DE",
        "Europe",
        900,
    )
    session = emulator.session(order.checkout_session_id)
    assert session["shipping_address_collection"]["allowed_countries"] == ["DE"]


@pytest.mark.parametrize(
    ("country", "message"),
    [("IT", "We can&#39;t ship this batch to Italy"), ("XX", "Choose the country")],
)
def test_a_destination_no_rate_covers_is_refused_and_the_hold_kept(
    client, buyer, priced_by_country, country, message
):
    _, csrf = buyer
    _buy(client, priced_by_country, csrf)
    order = db.session.scalar(select(Order))

    answer = client.post(
        f"/checkout/orders/{order.public_id}/destination",
        data={"csrf_token": csrf, "ship_country": country},
    )

    assert answer.status_code == 422
    assert message in answer.get_data(as_text=True)
    db.session.expire_all()
    order = db.session.get(Order, order.id)
    assert order.ship_country is None and order.state == "held"


def test_another_customers_order_has_no_destination_to_choose(
    app, client, buyer, priced_by_country
):
    other = factories.make_customer()
    db.session.commit()
    order = inventory.hold(priced_by_country.id, 1, customer=other, now=clock.now())
    db.session.commit()
    _, csrf = buyer

    answer = client.post(
        f"/checkout/orders/{order.public_id}/destination",
        data={"csrf_token": csrf, "ship_country": "DE"},
    )

    assert answer.status_code == 404
    db.session.expire_all()
    assert db.session.get(Order, order.id).ship_country is None


def test_the_drop_page_says_the_age_and_where_it_ships_and_asks_for_both(client, rye, buyer):
    page = client.get(f"/drops/{rye.drop.slug}").get_data(as_text=True)

    assert "21+" in page and "buyers aged 21 or over" in page
    assert "Germany, France, United Kingdom, United States only" in page
    assert 'name="birth_date"' in page and 'type="date"' in page
    options = page[page.index('name="ship_country"') :]
    options = options[: options.index("</select>")]
    assert [code for code in ("DE", "FR", "GB", "US", "IT") if f'value="{code}"' in options] == [
        "DE",
        "FR",
        "GB",
        "US",
    ]


def test_a_refused_buy_keeps_what_the_buyer_typed(client, rye, buyer):
    _, csrf = buyer
    page = _buy(client, rye, csrf, birth_date=_years_ago(20), ship_country="GB")

    html = page.get_data(as_text=True)
    assert f'value="{_years_ago(20)}"' in html
    assert '<option value="GB" selected>' in html


def test_an_unrestricted_batch_page_asks_for_neither(client, buyer):
    batch = live_batch(edition_size=5, limit=2)
    db.session.commit()

    page = client.get(f"/drops/{batch.drop.slug}").get_data(as_text=True)

    assert 'name="birth_date"' not in page and 'name="ship_country"' not in page

"""The pure rules of where a batch may go and who may buy it."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest

from shop import shipping_rates
from shop.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "codes"),
    [("de, fr at", ["AT", "DE", "FR"]), ("GB;IE\nUS", ["GB", "IE", "US"]), ("", [])],
)
def test_country_lists_are_read_loosely_and_sorted(text, codes):
    assert shipping_rates.parse_countries(text) == codes


@pytest.mark.parametrize("text", ["XX", "DE, ZZ", "D", "GER", "1A"])
def test_codes_that_are_not_countries_are_refused_by_name(text):
    with pytest.raises(InvalidInput, match=r"not (a )?country code"):
        shipping_rates.parse_countries(text)


@pytest.mark.parametrize(
    ("born", "today", "age"),
    [
        (date(2000, 6, 15), date(2021, 6, 14), 20),
        (date(2000, 6, 15), date(2021, 6, 15), 21),
        (date(2004, 2, 29), date(2025, 2, 28), 20),
        (date(2004, 2, 29), date(2025, 3, 1), 21),
    ],
)
def test_age_counts_whole_years_up_to_the_birthday(born, today, age):
    assert shipping_rates.age_on(born, today) == age


def _batch(minimum_age):
    return SimpleNamespace(minimum_age=minimum_age)


def test_an_unrestricted_batch_needs_no_date_of_birth():
    shipping_rates.check_age(_batch(None), None, date(2026, 12, 4))


@pytest.mark.parametrize(
    ("born", "message"),
    [
        (None, "enter your date of birth"),
        (date(2027, 1, 1), "real date of birth"),
        (date(1850, 1, 1), "real date of birth"),
        (date(2006, 12, 5), "only sold to buyers aged 21 or over"),
    ],
    ids=["missing", "in the future", "implausibly old", "one day short of 21"],
)
def test_an_age_restricted_batch_refuses_with_a_clear_reason(born, message):
    with pytest.raises(InvalidInput, match=message):
        shipping_rates.check_age(_batch(21), born, date(2026, 12, 4))


def test_a_buyer_who_turned_21_today_may_buy():
    shipping_rates.check_age(_batch(21), date(2005, 12, 4), date(2026, 12, 4))

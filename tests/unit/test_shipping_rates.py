"""The pure rules of where a batch may go and who may buy it."""

from __future__ import annotations

from datetime import date

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


def test_no_date_of_birth_is_none_and_a_date_input_value_is_read():
    assert shipping_rates.parse_birth_date("", date(2026, 12, 4)) is None
    assert shipping_rates.parse_birth_date(None, date(2026, 12, 4)) is None
    assert shipping_rates.parse_birth_date(" 2005-12-04 ", date(2026, 12, 4)) == date(2005, 12, 4)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("04/12/2005", "as a date"),
        ("2005-02-30", "as a date"),
        ("\uff12\uff10\uff10\uff15-01-01", "as a date"),
        ("2005-1-1", "as a date"),
        ("2027-01-01", "real date of birth"),
        ("1850-01-01", "real date of birth"),
    ],
    ids=["not ISO", "no such day", "full-width digits", "unpadded", "future", "implausibly old"],
)
def test_a_date_of_birth_that_makes_no_sense_is_refused_with_a_clear_reason(typed, message):
    with pytest.raises(InvalidInput, match=message):
        shipping_rates.parse_birth_date(typed, date(2026, 12, 4))

"""Where a batch may go, what shipping it costs there, and who is old enough to buy it.

- **Destinations**: the batch's own list of countries (a spirits batch that may only go to a
  few), else the shop's ``SHOP_SHIPPING_COUNTRIES``; when the maker has shipping rates, only
  countries some rate's zone covers.
- **Rates**: a batch's own rates replace the maker's; the first rate whose zone holds the
  country applies, free above its threshold. No rates at all means shipping is free.
- **Age**: a batch with a minimum age is sold only to buyers who confirm a date of birth at
  least that many years ago (counted on the shop's UTC date).

Plain functions with explicit inputs; they raise ``InvalidInput`` with words for the form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import pycountry
from sqlalchemy import select

from shop import audit, money
from shop.errors import InvalidInput, NotFound
from shop.extensions import db
from shop.models import Batch, ShippingRate, User

_CODE = re.compile(r"[A-Z]{2}")
_SPLIT = re.compile(r"[\s,;]+")
MAX_DAYS = 365


@dataclass(frozen=True)
class Quote:
    """What shipping one order to one country costs, as Checkout will show it."""

    country: str
    name: str
    amount: int
    min_days: int | None = None
    max_days: int | None = None


# --- countries -----------------------------------------------------------------------------


def country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    return getattr(country, "common_name", None) or (country.name if country else code)


def parse_countries(text: str, *, field: str = "Countries") -> list[str]:
    """ "de, FR at" → ["AT", "DE", "FR"]; refuses codes that are not ISO 3166-1 countries."""
    codes = sorted({part.upper() for part in _SPLIT.split(text or "") if part})
    unknown = [
        code
        for code in codes
        if not _CODE.fullmatch(code) or pycountry.countries.get(alpha_2=code) is None
    ]
    if unknown:
        raise InvalidInput(
            f"{field}: {', '.join(unknown)} "
            f"{'is not a country code' if len(unknown) == 1 else 'are not country codes'}"
            " — use two-letter ISO codes such as DE, GB or US."
        )
    return codes


def parse_country(value: str) -> str:
    """One country a buyer chose: a known ISO code, upper-case."""
    code = (value or "").strip().upper()
    if not _CODE.fullmatch(code) or pycountry.countries.get(alpha_2=code) is None:
        raise InvalidInput("Choose the country the order ships to.")
    return code


# --- rates ---------------------------------------------------------------------------------


def rates_for(batch: Batch) -> list[ShippingRate]:
    """The rates that apply to ``batch``: its own, else its maker's; oldest first."""
    rows = db.session.scalars(
        select(ShippingRate)
        .where(ShippingRate.maker_id == batch.product.maker_id)
        .where((ShippingRate.batch_id == batch.id) | ShippingRate.batch_id.is_(None))
        .order_by(ShippingRate.id)
    ).all()
    own = [rate for rate in rows if rate.batch_id == batch.id]
    return own or [rate for rate in rows if rate.batch_id is None]


def maker_rates(maker: User) -> list[ShippingRate]:
    """Every rate a maker has set: shop-wide ones first, then per batch."""
    return list(
        db.session.scalars(
            select(ShippingRate)
            .where(ShippingRate.maker_id == maker.id)
            .order_by(ShippingRate.batch_id.is_not(None), ShippingRate.batch_id, ShippingRate.id)
        )
    )


def destinations(batch: Batch, shop_countries: Iterable[str]) -> list[str]:
    """Countries ``batch`` can be shipped to, sorted by code."""
    return _destinations(batch, rates_for(batch), shop_countries)


def _destinations(
    batch: Batch, rates: list[ShippingRate], shop_countries: Iterable[str]
) -> list[str]:
    allowed = set(batch.ship_to_codes or shop_countries)
    if rates:
        allowed &= {code for rate in rates for code in rate.country_codes}
    return sorted(allowed)


def quote(batch: Batch, goods_amount: int, country: str, shop_countries: Iterable[str]) -> Quote:
    """Shipping for an order of ``goods_amount`` to ``country``; InvalidInput if it can't go."""
    if country not in destinations(batch, shop_countries):
        raise InvalidInput(f"We can't ship this batch to {country_name(country)}.")
    for rate in rates_for(batch):
        if country in rate.country_codes:
            return Quote(
                country, rate.name, rate.cost_for(goods_amount), rate.min_days, rate.max_days
            )
    return Quote(country, "Free shipping", 0)


@dataclass(frozen=True)
class RateDetails:
    """A rate as a maker types it; checked by :func:`save_rate`."""

    name: str
    countries: str
    amount: int
    currency: str
    free_above: int | None = None
    min_days: int | None = None
    max_days: int | None = None


def save_rate(
    maker: User,
    details: RateDetails,
    *,
    batch: Batch | None = None,
    rate: ShippingRate | None = None,
    actor: audit.Actor,
) -> ShippingRate:
    """Create (or update ``rate``) for the maker, or for one of their batches.

    The rate's currency must be the batch's (or, for a shop-wide rate, the currency of every
    batch it will price); amounts are never negative.
    """
    name = details.name.strip()
    if not name or len(name) > 80:
        raise InvalidInput("Give the rate a name of up to 80 characters, e.g. “Europe”.")
    codes = parse_countries(details.countries)
    if not codes:
        raise InvalidInput("List at least one country the rate covers.")
    if details.amount < 0 or (details.free_above is not None and details.free_above < 1):
        raise InvalidInput("Shipping amounts can't be negative.")
    currency = details.currency.lower()
    if batch is not None and currency != batch.currency.lower():
        raise InvalidInput(
            f"This batch is priced in {batch.currency.upper()}: "
            "its shipping rates must be in the same currency."
        )
    days = [d for d in (details.min_days, details.max_days) if d is not None]
    if any(d < 0 or d > MAX_DAYS for d in days) or (
        len(days) == 2 and details.min_days > details.max_days  # type: ignore[operator]
    ):
        raise InvalidInput("Delivery days run from a minimum to a maximum, at most 365.")
    action = "shipping.rate_edited" if rate is not None else "shipping.rate_added"
    rate = rate or ShippingRate(maker_id=maker.id)
    rate.batch_id = batch.id if batch is not None else None
    rate.name = name
    rate.countries = ",".join(codes)
    rate.amount = details.amount
    rate.currency = currency
    rate.free_above = details.free_above
    rate.min_days = details.min_days
    rate.max_days = details.max_days
    db.session.add(rate)
    db.session.flush()
    audit.record(action, actor=actor, maker=maker, batch=batch, detail=_describe(rate))
    return rate


def _describe(rate: ShippingRate) -> str:
    return f"{rate.name}: {money.format_money(rate.amount, rate.currency)} to {rate.countries}"


def rate_for(maker: User, rate_id: int) -> ShippingRate:
    """One of the maker's own rates; NotFound for anyone else's."""
    rate = db.session.get(ShippingRate, rate_id)
    if rate is None or rate.maker_id != maker.id:
        raise NotFound("No shipping rate of yours has that id.")
    return rate


def delete_rate(rate: ShippingRate, *, actor: audit.Actor) -> None:
    """Orders keep the rate's name and amount as charged; only future checkouts change."""
    audit.record(
        "shipping.rate_removed",
        actor=actor,
        maker=rate.maker,
        batch=rate.batch,
        detail=_describe(rate),
    )
    db.session.delete(rate)
    db.session.flush()


# --- age -----------------------------------------------------------------------------------


def age_on(birth_date: date, today: date) -> int:
    """Whole years from ``birth_date`` to ``today``."""
    before_birthday = (today.month, today.day) < (birth_date.month, birth_date.day)
    return today.year - birth_date.year - before_birthday


_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
OLDEST_AGE = 130


def parse_birth_date(value: str | None, today: date) -> date | None:
    """The date of birth a buyer typed (``YYYY-MM-DD``, as a date input sends it), or None when
    none was given. Whether the buyer is old enough is the hold's to decide (``shop.holds``); a
    malformed, future or implausibly old date is refused here, before anything is held."""
    text = (value or "").strip()
    if not text:
        return None
    found = _ISO_DATE.fullmatch(text)
    try:
        born = date(*(int(part) for part in found.groups())) if found else None
    except ValueError:
        born = None
    if born is None:
        raise InvalidInput("Enter your date of birth as a date, for example 1990-04-30.")
    if born > today or age_on(born, today) > OLDEST_AGE:
        raise InvalidInput("Enter your real date of birth.")
    return born

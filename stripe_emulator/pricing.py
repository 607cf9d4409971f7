"""What a Checkout Session costs: subtotal, discount, shipping and tax, in minor units.

Stripe Tax is not reachable here, so ``automatic_tax`` uses fixed **test rates** per country
(:data:`TAX_RATES_BPS`, basis points; any other country pays :data:`DEFAULT_TAX_BPS`). They make
the arithmetic deterministic for tests and the demo; they are not anybody's real tax law.

The rules, as Stripe applies them:

- a coupon discounts the line items, never shipping: ``percent_off`` rounds half up,
  ``amount_off`` is capped at the subtotal; the discount is spread over the lines in proportion
  (the last line takes the rounding remainder);
- tax is computed per line on what is left after the discount, and on shipping; an
  ``exclusive`` (or ``unspecified``) amount gets the tax **added**, an ``inclusive`` one already
  contains it (``tax = amount - amount / (1 + rate)``);
- ``amount_total = subtotal - discount + shipping + exclusive tax``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

#: Test VAT / sales-tax rates in basis points (1 900 = 19 %).
TAX_RATES_BPS: dict[str, int] = {
    "AT": 2000,
    "BE": 2100,
    "CA": 500,
    "DE": 1900,
    "DK": 2500,
    "ES": 2100,
    "FR": 2000,
    "GB": 2000,
    "IE": 2300,
    "IT": 2200,
    "NL": 2100,
    "SE": 2500,
    "US": 725,
}
DEFAULT_TAX_BPS = 1000
_SALES_TAX_COUNTRIES = frozenset({"US", "CA"})


@dataclass(frozen=True)
class Coupon:
    """The part of a coupon that changes an amount."""

    percent_off: float | None = None
    amount_off: int | None = None


@dataclass(frozen=True)
class Line:
    amount: int
    tax_behavior: str = "unspecified"


@dataclass(frozen=True)
class Totals:
    subtotal: int
    discount: int
    shipping: int
    shipping_tax: int
    shipping_total: int
    tax: int
    total: int
    line_discounts: tuple[int, ...]
    line_taxes: tuple[int, ...]
    tax_rate_bps: int | None
    tax_country: str | None


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def tax_rate_bps(country: str) -> int:
    return TAX_RATES_BPS.get(country.upper(), DEFAULT_TAX_BPS)


def tax_name(country: str) -> str:
    return "Sales tax" if country.upper() in _SALES_TAX_COUNTRIES else "VAT"


def discount_of(coupon: Coupon | None, subtotal: int) -> int:
    if coupon is None or subtotal <= 0:
        return 0
    if coupon.percent_off is not None:
        return min(subtotal, _round(Decimal(subtotal) * Decimal(str(coupon.percent_off)) / 100))
    return min(subtotal, coupon.amount_off or 0)


def _spread(total: int, amounts: list[int]) -> list[int]:
    """``total`` split over ``amounts`` in proportion; the last one takes the remainder."""
    whole = sum(amounts)
    if not amounts or whole == 0:
        return [0] * len(amounts)
    shares = [_round(Decimal(total) * amount / whole) for amount in amounts[:-1]]
    return [*shares, total - sum(shares)]


def tax_on(amount: int, tax_behavior: str, bps: int) -> tuple[int, bool]:
    """(tax, whether it is added on top) for ``amount`` at ``bps``."""
    if tax_behavior == "inclusive":
        net = Decimal(amount) * 10_000 / (10_000 + bps)
        return amount - _round(net), False
    return _round(Decimal(amount) * bps / 10_000), True


def totals(
    lines: list[Line],
    *,
    coupon: Coupon | None = None,
    shipping: Line | None = None,
    tax_country: str | None = None,
) -> Totals:
    """The session's amounts; ``tax_country`` None means no tax (off, or no address yet)."""
    subtotal = sum(line.amount for line in lines)
    discount = discount_of(coupon, subtotal)
    line_discounts = _spread(discount, [line.amount for line in lines])
    bps = tax_rate_bps(tax_country) if tax_country else None
    line_taxes: list[int] = []
    added = 0
    for line, line_discount in zip(lines, line_discounts, strict=True):
        tax, on_top = tax_on(line.amount - line_discount, line.tax_behavior, bps or 0)
        line_taxes.append(tax)
        added += tax if on_top else 0
    shipping_amount = shipping.amount if shipping else 0
    shipping_tax = shipping_added = 0
    if shipping and bps:
        shipping_tax, on_top = tax_on(shipping.amount, shipping.tax_behavior, bps)
        shipping_added = shipping_tax if on_top else 0
    added += shipping_added
    return Totals(
        subtotal=subtotal,
        discount=discount,
        shipping=shipping_amount,
        shipping_tax=shipping_tax,
        shipping_total=shipping_amount + shipping_added,
        tax=sum(line_taxes) + shipping_tax,
        total=subtotal - discount + shipping_amount + added,
        line_discounts=tuple(line_discounts),
        line_taxes=tuple(line_taxes),
        tax_rate_bps=bps,
        tax_country=tax_country.upper() if tax_country else None,
    )

"""Integer minor units with their currency; formatting lives here and in one Jinja filter."""

from __future__ import annotations

import re
from decimal import Decimal

# The highest price of one unit, and the highest amount Stripe accepts for one payment in most
# currencies (eight digits of minor units): $999,999.99, ¥99,999,999. A batch price above it is
# refused in the form and by a CHECK constraint; orders' amounts are BIGINT, so price x quantity
# can never overflow in the database either.
MAX_PRICE = 99_999_999

_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")

ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}
SUPPORTED = ("usd", "eur", "gbp", "cad", "aud", "chf", "sek", "dkk", "nok", "jpy")


def decimals(currency: str) -> int:
    currency = currency.lower()
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def format_money(amount: int, currency: str) -> str:
    """``2500, "usd"`` → ``$25.00``; ``4800, "jpy"`` → ``¥4,800``."""
    currency = (currency or "").lower()
    places = decimals(currency)
    value = f"{amount / 10**places:,.{places}f}" if places else f"{amount:,}"
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"


def parse_amount(text: str, currency: str) -> int:
    """``"25.50"`` in USD → 2550. ValueError for anything that is not a plain amount of ASCII
    digits (no exponent, no other script's digits), for zero, and for more than MAX_PRICE."""
    cleaned = (text or "").strip().replace(",", "")
    if not _AMOUNT.fullmatch(cleaned):
        raise ValueError("not an amount")
    minor = Decimal(cleaned) * (10 ** decimals(currency))
    if minor != minor.to_integral_value():
        raise ValueError("too many decimal places")
    if minor <= 0:
        raise ValueError("not a positive amount")
    if minor > MAX_PRICE:
        raise ValueError("too large")
    return int(minor)


def decimal_amount(amount: int, currency: str) -> str:
    """``9500, "usd"`` → ``"95.00"``: for form inputs and CSV cells."""
    places = decimals(currency)
    return f"{amount / 10**places:.{places}f}" if places else str(amount)

"""Test card numbers understood by the hosted page and the control API.

=========================  ====================================================
``4242 4242 4242 4242``    succeeds (any other Luhn-valid number succeeds too)
``4000 0000 0000 0002``    declined: "Your card was declined." (generic_decline)
``4000 0000 0000 9995``    declined: insufficient funds
``4000 0000 0000 0069``    declined: expired card
``4000 0025 …`` (prefix)   completes the session ``unpaid``; the result comes later
                           from ``POST /_emulator/sessions/{id}/async_result``
=========================  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass

SUCCESS_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000002"
ASYNC_PREFIX = "40000025"

_DECLINES = {
    "4000000000000002": ("generic_decline", "Your card was declined."),
    "4000000000009995": ("insufficient_funds", "Your card has insufficient funds."),
    "4000000000000069": ("expired_card", "Your card has expired."),
}


@dataclass(frozen=True)
class CardOutcome:
    """What happens when a customer pays with a card number."""

    result: str  # "succeeded", "async", "declined" or "invalid"
    brand: str = "visa"
    last4: str = "4242"
    decline_code: str | None = None
    message: str | None = None


def normalize(number: str) -> str:
    return "".join(char for char in number if char not in " -")


def classify(number: str) -> CardOutcome:
    """Decide the outcome of paying with ``number`` (spaces and dashes are ignored)."""
    digits = normalize(number)
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        return CardOutcome("invalid", message="Your card number is incomplete or invalid.")
    brand, last4 = _brand(digits), digits[-4:]
    if digits.startswith(ASYNC_PREFIX):
        return CardOutcome("async", brand, last4)
    if not _luhn_ok(digits):
        return CardOutcome("invalid", brand, last4, message="Your card number is incorrect.")
    if digits in _DECLINES:
        code, message = _DECLINES[digits]
        return CardOutcome("declined", brand, last4, decline_code=code, message=message)
    return CardOutcome("succeeded", brand, last4)


def _brand(digits: str) -> str:
    if digits.startswith("4"):
        return "visa"
    if digits[:2] in {"34", "37"}:
        return "amex"
    if 51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720:
        return "mastercard"
    return "unknown"


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


BILLING_COUNTRY = "US"  # the test cards are US cards: the tax country when no address is asked

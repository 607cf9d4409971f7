"""Whole numbers from the outside world: ASCII digits only, within a range.

Python's ``int()`` and ``str.isdigit()`` accept other scripts' digits (Arabic-Indic,
superscript, full-width), and the database's integers end at 2**31 - 1; a number that reaches
a query unchecked becomes a 500.
"""

from __future__ import annotations

import re

MAX_INT = 2**31 - 1  # PostgreSQL's INTEGER
_DIGITS = re.compile(r"[0-9]{1,10}")


def parse_whole(text: str | None, *, low: int = 0, high: int = MAX_INT) -> int | None:
    """The number ``text`` spells in ASCII digits if it lies in ``low..high``, else None."""
    if text is None or not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None

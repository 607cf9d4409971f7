"""Everything Stripe: the only package that imports ``stripe``.

Until Checkout is wired up these are the hooks the rest of the shop calls.
"""

from __future__ import annotations

from datetime import datetime


def settle_abandoned(session_id: str) -> str:
    """Ask Stripe to make an abandoned session unpayable.

    Returns ``"unpayable"`` (expired: release the stock), ``"complete"`` (paid: fulfil instead)
    or ``"unreachable"`` (keep the hold and try again next pass).
    """
    raise NotImplementedError


def fulfil(session_id: str, *, now: datetime) -> str:
    raise NotImplementedError

"""Why a hold was refused, in words: the second read a refusal may cost, never a grant.

The hold statement (``shop.holds``, run by ``shop.inventory.reserve``) decides; when it refuses
for one of the buyer-specific rules it only says which. These functions then read what a person
needs to hear — the batch's minimum age and countries, how long cooling off lasts, how many more
of the drop the account may hold and when its first hold ends, how many more of the batch are
allowed — and return or raise the domain error that says it. Read-only; refusals only.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import TYPE_CHECKING

import psycopg
from sqlalchemy import func, select

from shop import database, holds, shipping_rates
from shop.errors import (
    AgeRestricted,
    CannotShipThere,
    CoolingOff,
    DropCapReached,
    NetworkCapReached,
    NotOnSaleYet,
)
from shop.extensions import db
from shop.models import Batch, Order
from shop.models.order import EXPIRED, HELD

if TYPE_CHECKING:
    from shop.holds import Outcome

_CAP_CHECKS = {
    "ck_held_by_account_units_within_cap": "account",
    "ck_held_by_network_units_within_cap": "network",
}


def not_on_sale(batch_id: int, now: datetime) -> None:
    """A refusal as not live of a live drop's lined-up batch: it waited for the one before it
    to sell out (``holds.ON_SALE``); say so."""
    batch = db.session.get(Batch, batch_id)
    if batch is None or batch.follows is None or not batch.drop.is_live(now):
        return
    # The hold saw the batch before it with units; it may have sold out since (a burst).
    raise NotOnSaleYet(batch.number, batch.follows.number, just_now=batch.waiting_for is None)


def holder(values: dict, outcome: Outcome) -> None:
    """Why this account may not hold more of the drop now, in words (a second read, on
    refusals only): cooling off, then the cap per account, then the cap per network."""
    if not outcome.cooling_ok:
        raise cooling_off(values)
    cap_of = max(outcome.lim or 0, 0)
    if not outcome.account_ok:
        raise drop_cap(values, max(values["account_cap"], cap_of))
    raise NetworkCapReached(max(values["network_cap"], cap_of))


def race(error: psycopg.errors.CheckViolation, values: dict) -> None:
    """The snapshot allowed the hold, but holds racing on other batches of the drop carried the
    account's or the network's units over the cap first: the statement failed on the CHECK, so
    nothing was held. Say which cap (details only when this session can still read)."""
    which = _CAP_CHECKS.get(error.diag.constraint_name or "")
    if which == "network":
        raise NetworkCapReached(values["network_cap"]) from None
    if which == "account":
        if database.commits_alone():
            raise drop_cap(values, values["account_cap"]) from None
        raise DropCapReached(values["account_cap"]) from None


def cooling_off(values: dict) -> CoolingOff:
    """Cooling off lasts until the oldest of the last ``lapse_limit`` lapses leaves the window."""
    now, since, limit = values["now"], values["lapse_since"], values["lapse_limit"]
    lapsed = db.session.scalars(
        select(Order.released_at)
        .where(
            Order.customer_id == values["customer_id"],
            Order.state == EXPIRED,
            Order.released_at > since,
        )
        .order_by(Order.released_at.desc())
        .limit(limit)
    ).all()
    if not lapsed:  # re-held meanwhile (a late payment): try again at once
        return CoolingOff(limit, 1)
    ends = lapsed[-1] + (now - since)
    return CoolingOff(len(lapsed), math.ceil((ends - now).total_seconds()))


def drop_cap(values: dict, cap: int) -> DropCapReached:
    """How many more units of the drop the account may hold, and when its first hold ends."""
    drop_id = select(Batch.drop_id).where(Batch.id == values["batch_id"]).scalar_subquery()
    held, first_ends = db.session.execute(
        select(func.coalesce(func.sum(Order.quantity), 0), func.min(Order.hold_expires_at))
        .join(Batch, Batch.id == Order.batch_id)
        .where(
            Order.customer_id == values["customer_id"],
            Order.state == HELD,
            Batch.drop_id == drop_id,
        )
    ).one()
    now = values["now"]
    frees_in = (
        math.ceil((first_ends - now).total_seconds())
        if first_ends is not None and first_ends > now
        else None
    )
    return DropCapReached(cap, allowed=max(0, cap - held), frees_in=frees_in)


def buyer(
    batch_id: int, outcome: Outcome, *, birth_date: date | None, ship_country: str | None
) -> None:
    """Why the batch's terms refused this buyer, in words (a second read, on refusals only)."""
    batch = db.session.get_one(Batch, batch_id)
    if not outcome.age_ok:
        raise AgeRestricted(batch.minimum_age or 0, confirmed=birth_date is not None)
    raise CannotShipThere(
        [shipping_rates.country_name(code) for code in batch.ship_to_codes],
        country=shipping_rates.country_name(ship_country) if ship_country else None,
    )


def allowed_more(values: dict, limit: int) -> int:
    """How many more units of the batch this customer may hold under ``limit``."""
    units = db.session.execute(holds.statement(holds.ALLOTTED), values).scalar()
    return max(0, limit - (units or 0))

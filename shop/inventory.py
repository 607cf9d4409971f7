"""The only code that changes stock: holds (the crowd's, and personal ones), release, re-hold,
confirm (serial numbers), and the units set aside for a waitlist.

Every rule is enforced by the database in the same transaction, never by a read in Python
followed by a write: stock with one conditional ``UPDATE batches … WHERE sold + held + reserved
+ q <= edition_size`` (backed by a CHECK); the per-customer limit with a conditional upsert of
the (customer, batch) allotment; "the drop is live" inside the hold statement, the drop row
share-locked so a close that commits first is seen; the hoarding caps with one row each whose
CHECK ``units <= cap`` fails a hold that racing holds would carry over; every change of an
order's state as a compare-and-set, so release and confirm happen exactly once.

A crowd hold (:func:`reserve`) is one statement on PostgreSQL and the same steps in SQLite's
write-locked transaction, both built from ``shop.holds``; a personal hold (:func:`hold_for`)
takes the same stock and allotment steps for a customer the shop chose. Units freed while a
waitlist waits are set aside (``reserved``) by :func:`release`, never free to the crowd.

Functions never commit: the caller commits once (or runs them in ``database.committed()``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import psycopg
from flask import current_app
from sqlalchemy import case, func, select, update

from shop import database, holds, page_cache, refusals, shipping_rates
from shop.catalog import MAX_ID
from shop.errors import (
    DropNotLive,
    EditNotAllowed,
    InvalidQuantity,
    InvalidState,
    LimitReached,
    LoginRequired,
    NotFound,
    SoldOut,
)
from shop.extensions import db
from shop.models import Allotment, Batch, HeldByAccount, HeldByNetwork, Order, Unit
from shop.models.order import (
    CANCELLED,
    DRAW,
    EXPIRED,
    HELD,
    PAID,
    WAITLIST,
    new_certificate_code,
    new_public_id,
)

RELEASE_REASONS = (EXPIRED, CANCELLED)
PERSONAL_KINDS = (DRAW, WAITLIST)


class Buyer(Protocol):
    """A customer as far as a hold needs one: a User, or what a signed session claims."""

    id: int
    session_token: str


@dataclass(frozen=True)
class Reservation:
    """A hold just taken: the new order's ids, all a buy request needs to answer."""

    order_id: int
    public_id: str


def hold(batch_id: int, quantity: int, **terms: Any) -> Order:
    """:func:`reserve` (the same arguments), returning the held Order itself (for services and
    the console)."""
    return db.session.get_one(Order, reserve(batch_id, quantity, **terms).order_id)


def reserve(
    batch_id: int,
    quantity: int,
    *,
    customer: Buyer,
    now: datetime,
    hold_minutes: int | None = None,
    birth_date: date | None = None,
    ship_country: str | None = None,
    network: str | None = None,
) -> Reservation:
    """Reserve ``quantity`` units of batch ``batch_id`` for ``customer``: a held order.

    The buyer's session token, the batch's limit, price, stock, minimum age and ship-to list,
    the drop's state and what the account and its network already hold across the drop are all
    read where they are used — in the hold's one statement (PostgreSQL) or write-locked
    transaction (SQLite) — so nothing read earlier can go stale and a buy request needs no
    other query. ``birth_date`` (checked for sense by the caller) and ``ship_country`` are what
    the buyer confirmed; ``network`` is the keyed hash of the client's network
    (``limits.hold_network``; None: no cap per network); the order keeps all three. Raises, in
    this order, LoginRequired (the token was rotated), NotFound (no such batch),
    InvalidQuantity, DropNotLive, AgeRestricted, CannotShipThere, CoolingOff (too many of the
    account's holds lapsed lately), DropCapReached, NetworkCapReached (the caps across the
    drop), SoldOut (with how many are left) or LimitReached (with how many more are allowed);
    on any of them nothing is held.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidQuantity()
    if not isinstance(batch_id, int) or not 1 <= batch_id <= MAX_ID:
        raise NotFound()
    config = current_app.config
    minutes = hold_minutes if hold_minutes is not None else config["SHOP_HOLD_MINUTES"]
    values = {
        "now": now,
        "customer_id": customer.id,
        "session_token": customer.session_token,
        "batch_id": batch_id,
        "quantity": quantity,
        "public_id": new_public_id(),
        "hold_expires_at": now + timedelta(minutes=minutes),
        "age": shipping_rates.age_on(birth_date, now.date()) if birth_date else None,
        "birth_date": birth_date,
        "ship_country": ship_country,
        "network": network,
        "account_cap": holds.or_unlimited(config["SHOP_DROP_HOLD_CAP_PER_ACCOUNT"]),
        "network_cap": holds.or_unlimited(config["SHOP_DROP_HOLD_CAP_PER_NETWORK"]),
        "lapse_limit": holds.or_unlimited(config["SHOP_HOLD_LAPSE_LIMIT"]),
        "lapse_since": now - timedelta(minutes=config["SHOP_HOLD_LAPSE_WINDOW_MINUTES"]),
    }
    if database.is_postgresql():
        try:
            cursor = psycopg.RawCursor(database.driver_connection())
            row = cursor.execute(holds.PG_HOLD_DRIVER, holds.driver_values(values)).fetchone()
        except psycopg.errors.CheckViolation as error:  # racing holds carried a cap over
            refusals.race(error, values)
            raise
        outcome = holds.Outcome(*row)
    else:
        outcome = _hold_stepwise(values)
    if not outcome.signed_in:
        raise LoginRequired()
    if not outcome.found:
        raise NotFound()
    if quantity > outcome.lim:
        raise InvalidQuantity(quantity_message(outcome.lim))
    if not outcome.live:
        refusals.not_on_sale(batch_id, now)
        raise DropNotLive()
    if not outcome.age_ok or not outcome.ships_ok:
        refusals.buyer(batch_id, outcome, birth_date=birth_date, ship_country=ship_country)
    if not (outcome.cooling_ok and outcome.account_ok and outcome.network_ok):
        refusals.holder(values, outcome)
    if outcome.units is None:
        if quantity > outcome.remaining:
            raise SoldOut(remaining=max(0, outcome.remaining))
        raise LimitReached(allowed=refusals.allowed_more(values, outcome.lim))
    if outcome.order_id is None:  # impossible: the stock was read under the batch row's lock
        raise RuntimeError(f"a hold on batch {batch_id} took an allotment but no stock")
    return Reservation(outcome.order_id, values["public_id"])


def hold_for(
    customer_id: int, batch_id: int, quantity: int, *, kind: str, until: datetime, now: datetime
) -> Order | None:
    """A personal hold (a draw's win; a waitlist's offer, of units set aside for the line) for
    a customer the shop chose, until ``until``: none of the buyer's checks (session, liveness,
    caps), the crowd hold's guarantees in its lock order — stock, the per-customer allotment,
    what the account holds across the drop (whatever its cap). None, nothing changed, when stock
    or limit refuse. The sweeper releases it like any hold once ``until`` has passed."""
    if kind not in PERSONAL_KINDS or isinstance(quantity, bool) or quantity < 1:
        raise ValueError(f"a personal hold is {PERSONAL_KINDS} of 1 or more units")
    values = dict.fromkeys(("birth_date", "ship_country", "network"))
    values.update(customer_id=customer_id, batch_id=batch_id, quantity=quantity, now=now)
    values.update(public_id=new_public_id(), hold_expires_at=until)
    take, give_back = holds.PERSONAL_STOCK[kind]
    stock = take + " RETURNING drop_id, per_customer_limit, price, currency"
    taken = db.session.execute(holds.statement(stock), values).first()
    if taken is None:
        return None
    values.update(limit=taken.per_customer_limit, drop_id=taken.drop_id)
    if db.session.execute(holds.statement(holds.ALLOT_ONE), values).scalar() is None:
        db.session.execute(holds.statement(give_back), values)  # under our row lock
        return None
    if taken.drop_id is not None:
        _take_held(values, honoured=True)
    values.update(unit_price=taken.price, currency=taken.currency)
    new_order = holds.statement(holds.order_from_values(kind))
    return db.session.get_one(Order, db.session.execute(new_order, values).scalar_one())


def quantity_message(limit: int) -> str:
    return f"Choose a quantity between 1 and {limit}."


def _hold_stepwise(values: dict) -> holds.Outcome:
    """The PostgreSQL statement's steps, one by one, inside SQLite's write-locked transaction:
    the same fragments of ``shop.holds``, so the rules are written once."""
    session = db.session
    signed_in = session.execute(holds.statement(holds.BUYER), values).first() is not None
    terms = session.execute(holds.statement(holds.TERMS), values).first()
    if not signed_in or terms is None:
        return holds.Outcome(signed_in, terms is not None, *[None] * 2, *[False] * 6, None, None)
    lim, remaining = terms.lim, terms.remaining
    values = {**values, "drop_id": terms.drop_id, "limit": lim}
    drop_and_holder = holds.statement(
        f"SELECT EXISTS (SELECT 1 FROM drops d WHERE d.id = :drop_id AND {holds.LIVE_DROP}) "  # noqa: S608  # nosec B608 - constant
        f"AS live, {holds.holder_terms(drop=':drop_id', lim=':limit')}"
    )
    found = session.execute(drop_and_holder, values).one()
    outcome = holds.Outcome(
        True,
        True,
        lim,
        remaining,
        bool(found.live) and bool(terms.on_sale),
        bool(terms.age_ok),
        bool(terms.ships_ok),
        bool(found.cooling_ok),
        bool(found.account_ok),
        bool(found.network_ok),
        None,
        None,
    )
    quantity = values["quantity"]
    allowed = (
        outcome.live
        and outcome.age_ok
        and outcome.ships_ok
        and outcome.cooling_ok
        and outcome.account_ok
        and outcome.network_ok
    )
    if not allowed or quantity > lim or quantity > remaining:
        return outcome
    units = session.execute(holds.statement(holds.ALLOT_ONE), values).scalar()
    if units is None:
        return outcome
    _take_held(values)
    taken = session.execute(
        holds.statement(holds.TAKE_STOCK + " RETURNING price, currency"), values
    ).first()
    if taken is None:
        return replace(outcome, units=units)
    order_id = session.execute(
        holds.statement(holds.order_from_values()),
        {**values, "unit_price": taken.price, "currency": taken.currency},
    ).scalar_one()
    return replace(outcome, units=units, order_id=order_id)


def _take_held(values: dict, *, honoured: bool = False) -> None:
    """Add the quantity to what the account and its network hold across the drop (account row
    first, then network row: the order every writer locks them in). ``honoured``: a late
    payment re-held, counted whatever the caps (its cap is raised as far as it needs)."""
    for table, key, cap in (
        ("held_by_account", "customer_id", holds.account_cap(":limit")),
        ("held_by_network", "network", holds.network_cap(":limit")),
    ):
        if values[key] is None:
            continue
        if honoured:
            rows = f"VALUES (:drop_id, :{key}, :quantity, :quantity)"
            new_cap = holds.at_least(f"{table}.cap", f"{table}.units + :quantity")
        else:
            rows, new_cap = f"VALUES (:drop_id, :{key}, :quantity, {cap})", "EXCLUDED.cap"
        db.session.execute(holds.statement(holds.take_held(table, key, rows, cap=new_cap)), values)


def _return_held(order: Order) -> None:
    """Take the order's units off what its account and network hold across the drop (account
    row first, then network row), never below zero: a hold taken before these rows existed
    was never added."""
    drop_id = select(Batch.drop_id).where(Batch.id == order.batch_id).scalar_subquery()
    quantity = order.quantity
    for table, condition in (
        (HeldByAccount, HeldByAccount.customer_id == order.customer_id),
        (HeldByNetwork, HeldByNetwork.network == order.client_net),
    ):
        if table is HeldByNetwork and order.client_net is None:
            continue
        db.session.execute(
            update(table)
            .where(table.drop_id == drop_id, condition)
            .values(units=case((table.units > quantity, table.units - quantity), else_=0))
        )


def _return_allotment(customer_id: int, batch_id: int, quantity: int) -> None:
    db.session.execute(
        update(Allotment)
        .where(Allotment.customer_id == customer_id, Allotment.batch_id == batch_id)
        .values(units=Allotment.units - quantity)
    )


def _remaining(batch_id: int) -> int:
    left = Batch.edition_size - Batch.sold - Batch.held - Batch.reserved
    return db.session.scalar(select(left).where(Batch.id == batch_id))


def release(order: Order, reason: str, *, now: datetime) -> bool:
    """held → expired/cancelled, stock, allotment and the units held across the drop returned
    exactly once.

    Returns False (and changes nothing) when the order is no longer held.
    """
    if reason not in RELEASE_REASONS:
        raise ValueError(f"unknown release reason {reason!r}")
    changed = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.state == HELD)
        .values(state=reason, released_at=now, sweep_lease_until=None)
    ).rowcount
    if changed != 1:
        _refresh(order)
        return False
    # Set aside for the waitlist while anyone waits, else free: decided on the locked batch row,
    # so a crowd hold racing this release finds the units held or set aside, never free.
    set_aside = case((Batch.waiting > 0, Batch.reserved + order.quantity), else_=Batch.reserved)
    db.session.execute(
        update(Batch)
        .where(Batch.id == order.batch_id)
        .values(held=Batch.held - order.quantity, reserved=set_aside)
    )
    _return_allotment(order.customer_id, order.batch_id, order.quantity)
    _return_held(order)
    page_cache.numbers_changed(batch_ids=[order.batch_id])  # the line calls as many at once
    _refresh(order)
    return True


def join_line(batch_id: int) -> bool:
    """One more customer waits for the batch — only while the crowd can buy none of it and some
    of it is not yet sold for good (held or set aside can still come free). False otherwise."""
    joined = db.session.execute(
        update(Batch)
        .where(
            Batch.id == batch_id,
            Batch.sold + Batch.held + Batch.reserved >= Batch.edition_size,
            Batch.sold < Batch.edition_size,
        )
        .values(waiting=Batch.waiting + 1)
    ).rowcount
    return joined == 1


def leave_line(batch_id: int, count: int = 1) -> None:
    """``count`` fewer wait (they left, got an offer, or the line closed); once nobody waits,
    the units set aside for the line go back to the crowd in the same UPDATE."""
    db.session.execute(
        update(Batch)
        .where(Batch.id == batch_id)
        .values(
            waiting=Batch.waiting - count,
            reserved=case((Batch.waiting <= count, 0), else_=Batch.reserved),
        )
    )


def rehold(order: Order, *, now: datetime) -> None:
    """A released order whose payment arrived anyway takes its units back, if any are left.

    Raises SoldOut or LimitReached when they are not; then the payment must be refunded.
    """
    quantity = order.quantity
    reopened = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.state.in_(RELEASE_REASONS))
        .values(state=HELD, released_at=None)
    ).rowcount
    if reopened != 1:
        _refresh(order)
        raise InvalidState("Only a released order can be held again.")
    limit = db.session.scalar(select(Batch.per_customer_limit).where(Batch.id == order.batch_id))
    allotted = db.session.execute(
        update(Allotment)
        .where(
            Allotment.customer_id == order.customer_id,
            Allotment.batch_id == order.batch_id,
            Allotment.units + quantity <= limit,
        )
        .values(units=Allotment.units + quantity)
    ).rowcount
    if allotted != 1:
        _undo_rehold(order.id, now)
        values = {"customer_id": order.customer_id, "batch_id": order.batch_id}
        raise LimitReached(allowed=refusals.allowed_more(values, limit))
    taken = db.session.execute(
        update(Batch)
        .where(
            Batch.id == order.batch_id,
            Batch.sold + Batch.held + Batch.reserved + quantity <= Batch.edition_size,
        )
        .values(held=Batch.held + quantity)
    ).rowcount
    if taken != 1:
        _return_allotment(order.customer_id, order.batch_id, quantity)
        _undo_rehold(order.id, now)
        raise SoldOut(remaining=_remaining(order.batch_id))
    drop_id = db.session.scalar(select(Batch.drop_id).where(Batch.id == order.batch_id))
    if drop_id is not None:
        held_by = {"customer_id": order.customer_id, "network": order.client_net}
        _take_held({**held_by, "drop_id": drop_id, "quantity": quantity}, honoured=True)
    _refresh(order)


def _undo_rehold(order_id: int, now: datetime) -> None:
    db.session.execute(
        update(Order).where(Order.id == order_id).values(state=EXPIRED, released_at=now)
    )


def confirm(
    order: Order,
    *,
    now: datetime,
    payment_intent_id: str | None = None,
    customer_email: str | None = None,
    shipping: dict | None = None,
) -> bool:
    """held → paid exactly once: held stock becomes sold and the order's units get the next
    serial numbers of the batch (contiguous, no gap, no duplicate), each with an unguessable
    certificate code. Returns False (and changes nothing) if the order was not held.

    The batch's row is the hot one (every hold and release of the batch writes it), and its
    lock lasts until the caller commits: so the order is written first, with everything known
    before the numbers, and after the batch only what needs its numbers. A caller that renders
    from the order (the receipt) loads what it reads before calling."""
    values: dict = {
        "state": PAID,
        "paid_at": now,
        "sweep_lease_until": None,
        "payment_intent_id": func.coalesce(payment_intent_id, Order.payment_intent_id),
        "customer_email": func.coalesce(customer_email, Order.customer_email),
    }
    if shipping is not None:
        values["shipping"] = shipping
    paid = db.session.execute(
        update(Order).where(Order.id == order.id, Order.state == HELD).values(values),
        execution_options={"synchronize_session": "fetch"},  # the session's order follows
    ).rowcount
    if paid != 1:
        _refresh(order)
        return False
    # The row lock taken here orders concurrent confirms; RETURNING gives this order's range.
    sold, edition_size = db.session.execute(
        update(Batch)
        .where(Batch.id == order.batch_id)
        .values(held=Batch.held - order.quantity, sold=Batch.sold + order.quantity)
        .returning(Batch.sold, Batch.edition_size)
    ).one()
    if sold >= edition_size:  # the last unit: those waiting in line are told at once
        page_cache.numbers_changed(batch_ids=[order.batch_id])
    _return_held(order)
    first = sold - order.quantity + 1
    db.session.add_all(
        Unit(
            batch_id=order.batch_id,
            serial=serial,
            order_id=order.id,
            certificate_code=new_certificate_code(),
            created_at=now,
        )
        for serial in range(first, sold + 1)
    )
    db.session.flush()
    _refresh(order, ["units"], ["held", "sold"])  # the rest of both is as the session has it
    return True


def _refresh(
    order: Order,
    order_attributes: list[str] | None = None,
    batch_attributes: list[str] | None = None,
) -> None:
    """Forget what the session knew of the order and its batch (or of just those attributes)
    so its next read is the database's."""
    batch_id = order.batch_id  # read first: once expired, reading it reads the whole order
    if order in db.session:
        db.session.expire(order, order_attributes)
    batch = db.session.identity_map.get(db.session.identity_key(Batch, batch_id))
    if batch is not None:
        db.session.expire(batch, batch_attributes)


def resize_edition(batch: Batch, new_size: int) -> None:
    """Grow an edition, or shrink it no lower than what is sold and held right now; the
    condition lives in the UPDATE, so a hold racing the edit can never be squeezed out."""
    resized = db.session.execute(
        update(Batch)
        .where(Batch.id == batch.id, Batch.sold + Batch.held + Batch.reserved <= new_size)
        .values(edition_size=new_size)
    ).rowcount
    db.session.expire(batch, ["edition_size", "sold", "held"])
    if resized != 1:
        taken = batch.sold + batch.held
        raise EditNotAllowed(
            f"{batch.sold} sold and {batch.held} held right now, so the edition can't be "
            f"smaller than {taken}. Editions can grow, never shrink below what's taken.",
            minimum=taken,
        )


__all__ = [
    "confirm",
    "hold",
    "hold_for",
    "join_line",
    "leave_line",
    "rehold",
    "release",
    "resize_edition",
]

"""The only code that changes stock: hold, release, re-hold and confirm (serial numbers).

Every rule is enforced by the database in the same transaction, never by a read in Python
followed by a write:

- stock with one conditional ``UPDATE batches … WHERE sold + held + q <= edition_size``
  (backed by a CHECK constraint);
- the per-customer limit with a conditional upsert of the (customer, batch) allotment row;
- "the drop is live" from its state and window, evaluated in the hold statement itself, with the
  drop row share-locked so a close that commits first is always seen;
- every state change of an order as a compare-and-set on its current state, so release and
  confirm happen exactly once however often they are called.

On PostgreSQL a hold (:func:`reserve`) is ONE statement — the buyer's session token, the batch's
terms, the live drop, allotment, stock and order in a CTE — so a buy request needs no other query,
and inside ``database.committed()`` it commits by itself: the hot batch row is locked for that
statement and its WAL flush only, and not at all when the statement's snapshot already refuses
(sold out, limit reached, not live) — the crowd after a sell-out never queues on it. SQLite
runs the same steps as separate statements inside a ``BEGIN IMMEDIATE`` transaction (see
``shop.database``).

Functions never commit: the caller commits once (or runs them in ``database.committed()``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import text as _text
from sqlalchemy.sql.elements import TextClause

from shop import database
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
from shop.models import Batch, Order, Unit
from shop.models.order import CANCELLED, EXPIRED, new_certificate_code, new_public_id
from shop.models.types import UTCDateTime

RELEASE_REASONS = (EXPIRED, CANCELLED)
_TIME_PARAMS = ("now", "hold_expires_at")


def text(sql: str) -> TextClause:
    """A SQL statement whose time parameters go through the aware-UTC column type, so SQLite
    compares them in the same text form the ORM stores."""
    statement = _text(sql)
    names = [name for name in _TIME_PARAMS if f":{name}" in sql]
    return statement.bindparams(*(bindparam(name, type_=UTCDateTime()) for name in names))


_LIVE_DROP = """
    d.state IN ('scheduled', 'open')
    AND d.opens_at IS NOT NULL AND d.opens_at <= :now
    AND (d.closes_at IS NULL OR d.closes_at > :now)
"""

# Who is buying: the account, if the session token the buyer presents is still its current one
# (a logout elsewhere or a password change rotates it). Checked in the hold's own statement.
_BUYER = "SELECT id FROM users WHERE id = :customer_id AND session_token = :session_token"

# What a hold needs to know of the batch, read in the hold's own statement or write-locked
# transaction: no earlier read can go stale.
_TERMS = """
    SELECT b.drop_id, b.per_customer_limit AS lim, b.edition_size - b.sold - b.held AS remaining
    FROM batches b WHERE b.id = :batch_id
"""

_ALLOTTED = "SELECT units FROM allotments WHERE customer_id = :customer_id AND batch_id = :batch_id"

# The whole hold on PostgreSQL: one statement, one round trip, so it can commit on its own
# (``database.committed``) and no client round trip ever happens while the batch row is
# locked. First the statement's own snapshot is read without any lock (``seen``): when it
# already shows a refusal — not signed in, quantity over the limit, drop not live, too few left,
# the customer's allotment full — the statement refuses from it and locks nothing, so the crowd
# that arrives after the sell-out never queues on the batch row (refusing a moment early is the
# same answer as arriving a moment earlier; nothing is ever granted from the snapshot).
# Otherwise the batch row is locked (FOR UPDATE returns its latest version), so the stock it
# shows is the stock the UPDATE finds: the allotment is taken exactly when the stock is, and a
# refusal touches nothing. Stock and allotment change only when the buyer is who they say, the
# drop is live (its row share-locked, so a close that commits first is seen) and the quantity
# is within the limit and the stock; the conditional UPDATE and upsert decide.
_PG_HOLD = f"""
    WITH buyer AS ({_BUYER}
    ), seen AS (
        SELECT t.*, EXISTS (SELECT 1 FROM drops d WHERE d.id = t.drop_id AND {_LIVE_DROP}) AS live
        FROM ({_TERMS}) AS t
    ), terms AS ({_TERMS}
        AND EXISTS (SELECT 1 FROM buyer) AND EXISTS (
            SELECT 1 FROM seen WHERE seen.live AND :quantity <= seen.lim
                               AND :quantity <= seen.remaining
                               AND NOT EXISTS ({_ALLOTTED} AND units + :quantity > seen.lim))
        FOR UPDATE
    ), live AS (
        SELECT d.id FROM drops d JOIN terms t ON d.id = t.drop_id WHERE {_LIVE_DROP}
        FOR SHARE OF d
    ), allot AS (
        INSERT INTO allotments (customer_id, batch_id, units)
        SELECT buyer.id, :batch_id, :quantity FROM buyer, live, terms t
        WHERE :quantity <= t.lim AND :quantity <= t.remaining
        ON CONFLICT (customer_id, batch_id) DO UPDATE
            SET units = allotments.units + EXCLUDED.units
            WHERE allotments.units + EXCLUDED.units <= (SELECT lim FROM terms)
        RETURNING units
    ), stock AS (
        UPDATE batches SET held = held + :quantity
        WHERE id = :batch_id AND sold + held + :quantity <= edition_size
          AND EXISTS (SELECT 1 FROM allot)
        RETURNING price, currency
    ), new_order AS (
        INSERT INTO orders (public_id, customer_id, batch_id, quantity, unit_price, amount,
                            currency, state, hold_expires_at, checkout_attempt, created_at)
        SELECT :public_id, :customer_id, :batch_id, :quantity, price, price * :quantity,
               currency, 'held', :hold_expires_at, 0, :now
        FROM stock
        RETURNING id
    )
    SELECT EXISTS (SELECT 1 FROM buyer) AS signed_in, s.lim IS NOT NULL AS found,
           COALESCE(t.lim, s.lim), COALESCE(t.remaining, s.remaining),
           CASE WHEN t.lim IS NULL THEN s.live ELSE EXISTS (SELECT 1 FROM live) END AS live,
           (SELECT units FROM allot) AS units, (SELECT id FROM new_order) AS order_id
    FROM (SELECT 1) AS one LEFT JOIN seen s ON true LEFT JOIN terms t ON true
"""  # noqa: S608  # nosec B608 - the f-string only splices in the constants above
# psycopg's own placeholders: the hot path hands this to the driver without SQLAlchemy.
_PG_HOLD_DRIVER = re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", _PG_HOLD)


class Buyer(Protocol):
    """A customer as far as a hold needs one: a User, or what a signed session claims."""

    id: int
    session_token: str


@dataclass(frozen=True)
class Reservation:
    """A hold just taken: the new order's ids, all a buy request needs to answer."""

    order_id: int
    public_id: str


@dataclass(frozen=True)
class _Outcome:
    """What one hold attempt found: the buyer, the batch's terms, and an order or why not."""

    signed_in: bool
    found: bool
    lim: int | None
    remaining: int | None
    live: bool
    units: int | None  # the allotment after this hold; None when none was taken
    order_id: int | None


def hold(
    batch_id: int,
    quantity: int,
    *,
    customer: Buyer,
    now: datetime,
    hold_minutes: int | None = None,
) -> Order:
    """:func:`reserve`, returning the held Order itself (for services and the console)."""
    reservation = reserve(batch_id, quantity, customer=customer, now=now, hold_minutes=hold_minutes)
    return db.session.get_one(Order, reservation.order_id)


def reserve(
    batch_id: int,
    quantity: int,
    *,
    customer: Buyer,
    now: datetime,
    hold_minutes: int | None = None,
) -> Reservation:
    """Reserve ``quantity`` units of batch ``batch_id`` for ``customer``: a held order.

    The buyer's session token, the batch's limit, price and stock, and the drop's state are all
    read where they are used — in the hold's one statement (PostgreSQL) or write-locked
    transaction (SQLite) — so nothing read earlier can go stale and a buy request needs no other
    query. Raises LoginRequired (the token was rotated), NotFound (no such batch),
    InvalidQuantity, DropNotLive, SoldOut (with how many are left) or LimitReached (with how
    many more are allowed); on any of them nothing is held.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidQuantity()
    if not isinstance(batch_id, int) or not 1 <= batch_id <= MAX_ID:
        raise NotFound()
    minutes = hold_minutes if hold_minutes is not None else current_app.config["SHOP_HOLD_MINUTES"]
    values = {
        "now": now,
        "customer_id": customer.id,
        "session_token": customer.session_token,
        "batch_id": batch_id,
        "quantity": quantity,
        "public_id": new_public_id(),
        "hold_expires_at": now + timedelta(minutes=minutes),
    }
    if database.is_postgresql():
        outcome = _Outcome(
            *database.driver_connection().execute(_PG_HOLD_DRIVER, values).fetchone()
        )
    else:
        outcome = _hold_stepwise(values)
    if not outcome.signed_in:
        raise LoginRequired()
    if not outcome.found:
        raise NotFound()
    if quantity > outcome.lim:
        raise InvalidQuantity(quantity_message(outcome.lim))
    if not outcome.live:
        raise DropNotLive()
    if outcome.units is None:
        if quantity > outcome.remaining:
            raise SoldOut(remaining=max(0, outcome.remaining))
        raise LimitReached(allowed=_allowed_more(values, outcome.lim))
    if outcome.order_id is None:  # impossible: the stock was read under the batch row's lock
        raise RuntimeError(f"a hold on batch {batch_id} took an allotment but no stock")
    return Reservation(outcome.order_id, values["public_id"])


def quantity_message(limit: int) -> str:
    return f"Choose a quantity between 1 and {limit}."


def _hold_stepwise(values: dict) -> _Outcome:
    """The PostgreSQL statement's steps, one by one, inside SQLite's write-locked transaction."""
    session = db.session
    signed_in = session.execute(text(_BUYER), values).first() is not None
    terms = session.execute(text(_TERMS), values).first()
    if not signed_in or terms is None:
        return _Outcome(signed_in, terms is not None, None, None, False, None, None)
    lim, remaining = terms.lim, terms.remaining
    live_drop = text(f"SELECT d.id FROM drops d WHERE d.id = :drop_id AND {_LIVE_DROP}")  # noqa: S608 - constant  # nosec B608
    live = session.execute(live_drop, {**values, "drop_id": terms.drop_id}).first() is not None
    outcome = _Outcome(True, True, lim, remaining, live, None, None)
    quantity = values["quantity"]
    if not live or quantity > lim or quantity > remaining:
        return outcome
    units = session.execute(
        text(
            """
            INSERT INTO allotments (customer_id, batch_id, units)
            VALUES (:customer_id, :batch_id, :quantity)
            ON CONFLICT (customer_id, batch_id) DO UPDATE
                SET units = allotments.units + excluded.units
                WHERE allotments.units + excluded.units <= :limit
            RETURNING units
            """
        ),
        {**values, "limit": lim},
    ).scalar()
    if units is None:
        return outcome
    taken = session.execute(
        text(
            "UPDATE batches SET held = held + :quantity "
            "WHERE id = :batch_id AND sold + held + :quantity <= edition_size "
            "RETURNING price, currency"
        ),
        values,
    ).first()
    if taken is None:
        return replace(outcome, units=units)
    order_id = session.execute(
        text(
            """
            INSERT INTO orders (public_id, customer_id, batch_id, quantity, unit_price, amount,
                                currency, state, hold_expires_at, checkout_attempt, created_at)
            VALUES (:public_id, :customer_id, :batch_id, :quantity, :unit_price, :amount,
                    :currency, 'held', :hold_expires_at, 0, :now)
            RETURNING id
            """
        ),
        {
            **values,
            "unit_price": taken.price,
            "amount": taken.price * quantity,
            "currency": taken.currency,
        },
    ).scalar_one()
    return replace(outcome, units=units, order_id=order_id)


def _return_allotment(customer_id: int, batch_id: int, quantity: int) -> None:
    db.session.execute(
        text(
            "UPDATE allotments SET units = units - :quantity "
            "WHERE customer_id = :customer_id AND batch_id = :batch_id"
        ),
        {"quantity": quantity, "customer_id": customer_id, "batch_id": batch_id},
    )


def _allowed_more(values: dict, limit: int) -> int:
    """How many more units of the batch this customer may hold under ``limit``."""
    units = db.session.execute(text(_ALLOTTED), values).scalar()
    return max(0, limit - (units or 0))


def _remaining(batch_id: int) -> int:
    return db.session.execute(
        text("SELECT edition_size - sold - held FROM batches WHERE id = :id"), {"id": batch_id}
    ).scalar_one()


def release(order: Order, reason: str, *, now: datetime) -> bool:
    """held → expired/cancelled, stock and allotment returned exactly once.

    Returns False (and changes nothing) when the order is no longer held.
    """
    if reason not in RELEASE_REASONS:
        raise ValueError(f"unknown release reason {reason!r}")
    changed = db.session.execute(
        text(
            "UPDATE orders SET state = :reason, released_at = :now, sweep_lease_until = NULL "
            "WHERE id = :id AND state = 'held'"
        ),
        {"reason": reason, "now": now, "id": order.id},
    ).rowcount
    if changed != 1:
        _refresh(order)
        return False
    db.session.execute(
        text("UPDATE batches SET held = held - :q WHERE id = :batch_id"),
        {"q": order.quantity, "batch_id": order.batch_id},
    )
    _return_allotment(order.customer_id, order.batch_id, order.quantity)
    _refresh(order)
    return True


def rehold(order: Order, *, now: datetime) -> None:
    """A released order whose payment arrived anyway takes its units back, if any are left.

    Raises SoldOut or LimitReached when they are not; then the payment must be refunded.
    """
    values = {
        "id": order.id,
        "customer_id": order.customer_id,
        "batch_id": order.batch_id,
        "quantity": order.quantity,
    }
    reopened = db.session.execute(
        text(
            "UPDATE orders SET state = 'held', released_at = NULL "
            "WHERE id = :id AND state IN ('expired', 'cancelled')"
        ),
        values,
    ).rowcount
    if reopened != 1:
        _refresh(order)
        raise InvalidState("Only a released order can be held again.")
    limit = db.session.execute(
        text("SELECT per_customer_limit FROM batches WHERE id = :batch_id"), values
    ).scalar_one()
    values["limit"] = limit
    allotted = db.session.execute(
        text(
            "UPDATE allotments SET units = units + :quantity "
            "WHERE customer_id = :customer_id AND batch_id = :batch_id "
            "AND units + :quantity <= :limit"
        ),
        values,
    ).rowcount
    if allotted != 1:
        _undo_rehold(values, now)
        raise LimitReached(allowed=_allowed_more(values, limit))
    taken = db.session.execute(
        text(
            "UPDATE batches SET held = held + :quantity "
            "WHERE id = :batch_id AND sold + held + :quantity <= edition_size"
        ),
        values,
    ).rowcount
    if taken != 1:
        _return_allotment(order.customer_id, order.batch_id, order.quantity)
        _undo_rehold(values, now)
        raise SoldOut(remaining=_remaining(order.batch_id))
    _refresh(order)


def _undo_rehold(values: dict, now: datetime) -> None:
    db.session.execute(
        text("UPDATE orders SET state = 'expired', released_at = :now WHERE id = :id"),
        {"id": values["id"], "now": now},
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
    certificate code. Returns False (and changes nothing) if the order was not held."""
    paid = db.session.execute(
        text(
            "UPDATE orders SET state = 'paid', paid_at = :now, sweep_lease_until = NULL, "
            "payment_intent_id = COALESCE(:pi, payment_intent_id), "
            "customer_email = COALESCE(:email, customer_email) "
            "WHERE id = :id AND state = 'held'"
        ),
        {"now": now, "pi": payment_intent_id, "email": customer_email, "id": order.id},
    ).rowcount
    if paid != 1:
        _refresh(order)
        return False
    # The row lock taken here orders concurrent confirms; RETURNING gives this order's range.
    sold = db.session.execute(
        text(
            "UPDATE batches SET held = held - :q, sold = sold + :q WHERE id = :batch_id "
            "RETURNING sold"
        ),
        {"q": order.quantity, "batch_id": order.batch_id},
    ).scalar_one()
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
    if shipping is not None:
        order.shipping = shipping
    db.session.flush()
    _refresh(order)
    return True


def _refresh(order: Order) -> None:
    """Forget what the session knew of the order so its next read is the database's."""
    if order in db.session:
        db.session.expire(order)
    batch = db.session.identity_map.get(db.session.identity_key(Batch, order.batch_id))
    if batch is not None:
        db.session.expire(batch)


def resize_edition(batch: Batch, new_size: int) -> None:
    """Grow an edition, or shrink it no lower than what is sold and held right now; the
    condition lives in the UPDATE, so a hold racing the edit can never be squeezed out."""
    resized = db.session.execute(
        text("UPDATE batches SET edition_size = :size WHERE id = :id AND sold + held <= :size"),
        {"size": new_size, "id": batch.id},
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
    "rehold",
    "release",
    "resize_edition",
]

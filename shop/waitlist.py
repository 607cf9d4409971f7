"""The waitlist: customers in line for a sold-out batch are offered its freed units in turn.

- **Joining** (:func:`join`): one active place per account and batch (a partial UNIQUE index),
  only while the crowd can buy none of the batch and some of it can still come free; the batch
  row's ``waiting`` counter grows in the same transaction (``inventory.join_line``).
- **Freed units** (an expired or cancelled hold of any kind) are set aside for the line by
  ``inventory.release`` itself while anyone waits, so they never reach the crowd first.
- **Offers** (:func:`offer_freed`, the worker): under the batch row's lock, the next waiting
  place gets a personal hold of the set-aside units (``inventory.hold_for``, kind ``waitlist``)
  until ``SHOP_WAITLIST_OFFER_MINUTES`` from now, and a message; an offer that ends unpaid is
  released like any hold — its units are set aside again and go to the next in line. Once
  nobody waits, what is still set aside returns to the crowd (``inventory.leave_line``).
- **The line closes** when the batch is sold for good or its drop has closed: everyone still
  waiting is told at once.

Every lock is taken batch row first (joining inserts its place, which nobody else can see yet,
then updates the batch), so joins, leaves, offers and releases never deadlock. The caller commits
:func:`join` and :func:`leave`; :func:`offer_freed` commits per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from shop import claims, inventory, messages
from shop.errors import (
    AlreadyInLine,
    DropNotLive,
    InvalidQuantity,
    LimitReached,
    NotSoldOut,
)
from shop.extensions import db
from shop.models import Allotment, Batch, Drop, Order, User, WaitlistPlace
from shop.models.order import CANCELLED, EXPIRED, PAID, REFUNDED, WAITLIST
from shop.models.waitlist import (
    ACTIVE,
    ACTIVE_SQL,
    BOUGHT,
    ENDED,
    LAPSED,
    LEFT,
    OFFERED,
    WAITING,
    is_active,
)


@dataclass(frozen=True)
class Standing:
    """A customer's place as they see it: the place, and how many are ahead of them + 1."""

    place: WaitlistPlace
    position: int | None  # None once it no longer waits (offered, or over)


def join(batch: Batch, quantity: int, *, customer: User, now: datetime) -> WaitlistPlace:
    """Take a place at the back of the line for ``batch``. Raises DropNotLive, InvalidQuantity,
    LimitReached (the customer has as many as allowed already), AlreadyInLine, NotSoldOut."""
    if batch.drop is None or not batch.drop.is_live(now):
        raise DropNotLive()
    if isinstance(quantity, bool) or not 1 <= quantity <= batch.per_customer_limit:
        raise InvalidQuantity(f"Choose a quantity between 1 and {batch.per_customer_limit}.")
    if _allowed_more(customer.id, batch) < 1:
        raise LimitReached(0)
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    joined = db.session.execute(
        insert(WaitlistPlace)
        .values(batch_id=batch.id, customer_id=customer.id, quantity=quantity, joined_at=now)
        .on_conflict_do_nothing(
            index_elements=["batch_id", "customer_id"],
            index_where=text(ACTIVE_SQL),  # a literal: the partial index's own predicate
        )
        .returning(WaitlistPlace.id)
    ).scalar()
    if joined is None:
        raise AlreadyInLine()
    claims.changed(customer.id)
    if not inventory.join_line(batch.id):
        if batch.sold >= batch.edition_size:
            raise NotSoldOut("Every unit of this batch is paid for, so none can come free.")
        raise NotSoldOut()
    return db.session.get_one(WaitlistPlace, joined)


def leave(place: WaitlistPlace, *, now: datetime) -> bool:
    """Leave the line (or turn down an offer whose hold has ended — the caller releases a held
    offer first, through ``orders.cancel``). Returns False when the place was over already."""
    db.session.execute(select(Batch.id).where(Batch.id == place.batch_id).with_for_update())
    left = db.session.execute(
        update(WaitlistPlace)
        .where(WaitlistPlace.id == place.id, WaitlistPlace.state.in_(ACTIVE))
        .values(state=LEFT, ended_at=now)
        .returning(WaitlistPlace.order_id)
    ).first()
    claims.changed(place.customer_id)
    db.session.expire(place)
    if left is None:
        return False
    if left.order_id is None:  # it was waiting: one fewer in line
        inventory.leave_line(place.batch_id)
    return True


def standings(customer: User, batch_ids: list[int]) -> dict[int, Standing]:
    """The customer's active places on these batches, with their position in line."""
    if not batch_ids or not customer.is_authenticated:
        return {}
    places = db.session.scalars(
        select(WaitlistPlace).where(
            WaitlistPlace.customer_id == customer.id,
            WaitlistPlace.batch_id.in_(batch_ids),
            WaitlistPlace.state.in_(ACTIVE),
        )
    ).all()
    return {place.batch_id: standing(place) for place in places}


def in_line_column(count: int):
    """Whether the account (``User``, correlated) has an active place on any of ``count``
    batches (bound as ``catalog.taken_params`` binds them): a column for ``auth``'s one
    statement of a drop page."""
    return (
        select(WaitlistPlace.id)
        .where(
            WaitlistPlace.customer_id == User.id,
            WaitlistPlace.batch_id.in_([bindparam(f"batch_{i}") for i in range(count)]),
            is_active(),
        )
        .exists()
    )


def standing(place: WaitlistPlace) -> Standing:
    if place.state != WAITING:
        return Standing(place, None)
    ahead = db.session.scalar(
        select(func.count()).where(
            WaitlistPlace.batch_id == place.batch_id,
            WaitlistPlace.state == WAITING,
            WaitlistPlace.id < place.id,
        )
    )
    return Standing(place, (ahead or 0) + 1)


def place_for(customer: User, public_id: str) -> WaitlistPlace | None:
    """The customer's own place behind an offer link; anyone else's (or none) is None."""
    if not 10 <= len(public_id) <= 32:
        return None
    return db.session.scalar(
        select(WaitlistPlace).where(
            WaitlistPlace.public_id == public_id, WaitlistPlace.customer_id == customer.id
        )
    )


def active_place(customer: User, batch_id: int) -> WaitlistPlace | None:
    return db.session.scalar(
        select(WaitlistPlace).where(
            WaitlistPlace.customer_id == customer.id,
            WaitlistPlace.batch_id == batch_id,
            WaitlistPlace.state.in_(ACTIVE),
        )
    )


def _allowed_more(customer_id: int, batch: Batch) -> int:
    taken = db.session.scalar(
        select(Allotment.units).where(
            Allotment.customer_id == customer_id, Allotment.batch_id == batch.id
        )
    )
    return batch.per_customer_limit - (taken or 0)


# --- the worker's side ---------------------------------------------------------------------


@dataclass
class Offers:
    offered: int = 0  # places that got an offer in this pass
    settled: int = 0  # offers found paid or ended unpaid
    closed: int = 0  # places whose line closed

    @property
    def activity(self) -> int:
        return self.offered + self.settled + self.closed

    def summary(self) -> str:
        return f"offered {self.offered}, settled {self.settled}, closed {self.closed}"


def offer_freed(now: datetime) -> Offers:
    """One pass: note which offers were paid or ran out, close lines that can never be served,
    and offer every batch's set-aside units to its line in order. Safe to run in several
    processes: a batch is offered under its row lock (``SKIP LOCKED``: a busy one waits for
    the next pass) and every change of a place is a compare-and-set on its state."""
    report = Offers(settled=_settle_offers())
    db.session.commit()
    for batch_id in db.session.scalars(select(Batch.id).where(Batch.waiting > 0)).all():
        report.closed += _close_if_hopeless(batch_id, now)
        db.session.commit()
    for batch_id in db.session.scalars(select(Batch.id).where(Batch.reserved > 0)).all():
        report.offered += _offer(batch_id, now)
        db.session.commit()
    return report


def _settle_offers() -> int:
    """Offered places whose hold was paid become ``bought``; those released unpaid ``lapsed``
    (their units were set aside again by the release itself)."""
    settled = 0
    for states, outcome in (((PAID, REFUNDED), BOUGHT), ((EXPIRED, CANCELLED), LAPSED)):
        ended = select(Order.id).where(Order.kind == WAITLIST, Order.state.in_(states))
        customers = db.session.scalars(
            update(WaitlistPlace)
            .where(WaitlistPlace.state == OFFERED, WaitlistPlace.order_id.in_(ended))
            .values(state=outcome)
            .returning(WaitlistPlace.customer_id)
        ).all()
        for customer_id in customers:
            claims.changed(customer_id)
        settled += len(customers)
    return settled


def _locked(batch_id: int) -> Batch | None:
    return db.session.scalar(
        select(Batch)
        .where(Batch.id == batch_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )


def _close_if_hopeless(batch_id: int, now: datetime) -> int:
    """A line that can never be served closes: the batch is paid for to the last unit, or its
    drop closed. Everyone still waiting is told at once."""
    batch = _locked(batch_id)
    if batch is None or batch.waiting <= 0:
        return 0
    drop: Drop | None = batch.drop
    sold_out = batch.sold >= batch.edition_size
    if not sold_out and drop is not None and drop.phase(now) != "closed":
        return 0
    waiting = db.session.scalars(
        select(WaitlistPlace).where(
            WaitlistPlace.batch_id == batch_id, WaitlistPlace.state == WAITING
        )
    ).all()
    for place in waiting:
        place.state, place.ended_at = ENDED, now
        messages.waitlist_closed(place, sold_out=sold_out)
    db.session.flush()
    inventory.leave_line(batch_id, len(waiting))
    return len(waiting)


def _offer(batch_id: int, now: datetime) -> int:
    """Offer the batch's set-aside units to its line, first come first served: each place gets
    what it asked for, as far as the units and its customer's limit go."""
    batch = _locked(batch_id)
    if batch is None or batch.drop is None or not batch.drop.is_live(now):
        return 0  # busy (next pass), or not selling: a closed drop's line closes instead
    until = now + timedelta(minutes=current_app.config["SHOP_WAITLIST_OFFER_MINUTES"])
    offered = 0
    while batch.reserved > 0:
        place = db.session.scalar(
            select(WaitlistPlace)
            .where(WaitlistPlace.batch_id == batch_id, WaitlistPlace.state == WAITING)
            .order_by(WaitlistPlace.id)
            .limit(1)
        )
        if place is None:  # cannot be: units are set aside only while someone waits
            break
        units = min(place.quantity, batch.reserved, _allowed_more(place.customer_id, batch))
        order = None
        if units > 0:
            order = inventory.hold_for(
                place.customer_id, batch_id, units, kind=WAITLIST, until=until, now=now
            )
        if order is None:  # they own as many as allowed meanwhile: nothing to offer them
            place.state, place.ended_at = ENDED, now
        else:
            place.state, place.order_id, place.offered_at = OFFERED, order.id, now
            messages.waitlist_offer(place, order)
            offered += 1
        db.session.flush()
        inventory.leave_line(batch_id)
        db.session.refresh(batch)
    return offered

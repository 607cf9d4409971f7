"""Draws: a drop whose units go to entries drawn by a published rule, not to the fastest click.

Commit, then reveal. When the maker announces a draw drop (``drops.open_drop``) the shop sets a
secret seed, once, and from then on shows its SHA-256 (the *commitment*). Customers enter in the
drop's window (one entry per account and batch). After the window the draw runs once
(:func:`run_draw`, from the worker or ``flask shop draw SLUG``): each batch's entries are put in
*draw order* — ascending HMAC-SHA256(seed, entry public id) — and the batch's units are given in
that order, each entry what it asked for while units remain (the last may get fewer). Every
winner gets a personal hold (``inventory.hold_for``, kind ``draw``) to pay for by a deadline;
units a winner leaves unpaid go to the next entries in draw order (:func:`pass_on_lapsed`).
Then the seed and the entries (public ids and quantities) are public (:func:`published`), and
``python -m shop.verify_draw`` recomputes everything from them.

What it proves and what it cannot: the seed was fixed before any entry (its hash was public),
and the winners follow from the seed and the published list. It cannot prove that every listed
entry is a distinct person; the accounts behind entries are the shop's to police.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from shop import inventory, messages, page_cache
from shop.errors import InvalidQuantity, InvalidState, NotFound, ShopError
from shop.extensions import db
from shop.models import Batch, DrawEntry, Drop, Order, User
from shop.models.draw import ENTERED, LAPSED, WAITING, WON
from shop.models.drop import DRAFT, DRAW, OPEN, SCHEDULED
from shop.models.order import CANCELLED, EXPIRED

RULE = "smallbatch-draw-v1"
RULE_TEXT = (
    "commitment = SHA-256(seed); for each batch, order its entries by "
    "HMAC-SHA256(key=seed, message=entry id), ascending (hex), ties by entry id; "
    "give each entry in that order the units it asked for while units remain "
    "(the last one drawn may get fewer). Seed and ids are ASCII text."
)


class EntryRefused(ShopError):
    """An entry the draw does not take: outside its window, a second one, over the limit, or a
    drop that is not a draw. Nothing was entered."""

    status = 409
    code = "entry_refused"
    message = "That entry could not be taken."


# The rule, as plain functions of public data (shop/verify_draw.py restates it independently).


def new_seed() -> str:
    return secrets.token_hex(32)


def commitment_of(seed: str) -> str:
    return hashlib.sha256(seed.encode("ascii")).hexdigest()


def ticket(seed: str, entry_id: str) -> str:
    return hmac.new(seed.encode("ascii"), entry_id.encode("ascii"), hashlib.sha256).hexdigest()


def draw_order(seed: str, entry_ids: list[str]) -> list[str]:
    return sorted(entry_ids, key=lambda entry_id: (ticket(seed, entry_id), entry_id))


def allocate(ordered: list[tuple[str, int]], units: int) -> list[tuple[str, int]]:
    """(entry id, units given) for the entries drawn, from (entry id, quantity) in draw order."""
    winners = []
    for entry_id, quantity in ordered:
        if units <= 0:
            break
        given = min(quantity, units)
        winners.append((entry_id, given))
        units -= given
    return winners


# Entering.


def _taking_entries(now: datetime):
    """The drop's window in SQL: announced, not suspended, opened, not closed, not drawn."""
    return and_(
        Drop.mode == DRAW,
        Drop.state.in_((SCHEDULED, OPEN)),
        Drop.suspended.is_(False),
        Drop.opens_at <= now,
        or_(Drop.closes_at.is_(None), Drop.closes_at > now),
        Drop.drawn_at.is_(None),
    )


def enter(drop: Drop, batch_id: int, quantity: int, *, customer: User, now: datetime) -> DrawEntry:
    """One entry of ``customer`` for ``quantity`` units of ``batch_id`` in ``drop``'s draw.

    The window is checked with the drop row share-locked, so an entry either commits before
    the draw claims the drop (and is drawn) or sees it drawn; UNIQUE (batch, customer) makes a
    second entry from another tab fail. Raises EntryRefused, InvalidQuantity or NotFound.
    """
    if not drop.is_draw:
        raise EntryRefused(
            "This drop sells first come, first served: there is no draw to enter. "
            "Use the buy button instead."
        )
    batch = next((b for b in drop.batches if b.id == batch_id), None)
    if batch is None:
        raise NotFound()
    limit = batch.per_customer_limit
    if quantity < 1 or quantity > limit:
        raise InvalidQuantity(f"Enter for 1 to {limit} {batch.unit_word(limit)}.")
    taking = db.session.scalar(
        select(Drop.id).where(Drop.id == drop.id, _taking_entries(now)).with_for_update(read=True)
    )
    if taking is None:
        raise EntryRefused(_closed_reason(drop, now))
    entry = DrawEntry(
        drop_id=drop.id,
        batch_id=batch.id,
        customer_id=customer.id,
        quantity=quantity,
        state=ENTERED,
        created_at=now,
    )
    try:
        with db.session.begin_nested():
            db.session.add(entry)
    except IntegrityError:
        mine = entry_of(customer, batch.id)
        raise EntryRefused(
            "You have already entered the draw for this batch"
            + (f" (entry {mine.public_id})" if mine else "")
            + ". One entry per account."
        ) from None
    return entry


def _closed_reason(drop: Drop, now: datetime) -> str:
    if drop.drawn_at is not None:
        return "This draw has been drawn: entries are closed."
    if drop.state == DRAFT or drop.opens_at is None or drop.opens_at > now:
        return "Entries for this draw are not open yet."
    if drop.suspended:
        return "This drop is paused: no entries right now."
    return "Entries for this draw have closed."


def entry_of(customer: User, batch_id: int) -> DrawEntry | None:
    return db.session.scalar(
        select(DrawEntry).where(
            DrawEntry.customer_id == customer.id, DrawEntry.batch_id == batch_id
        )
    )


def entries_of(customer: User | None, drop: Drop) -> dict[int, DrawEntry]:
    """The customer's entries in the drop's draw, by batch id."""
    if customer is None or not drop.is_draw:
        return {}
    found = db.session.scalars(
        select(DrawEntry).where(DrawEntry.customer_id == customer.id, DrawEntry.drop_id == drop.id)
    )
    return {entry.batch_id: entry for entry in found}


def entry_counts(drop: Drop) -> dict[int, int]:
    return dict(
        db.session.execute(
            select(DrawEntry.batch_id, func.count())
            .where(DrawEntry.drop_id == drop.id)
            .group_by(DrawEntry.batch_id)
        ).all()
    )


# Committing: the seed is set once, when the drop is announced.


def seed_values() -> dict:
    """What ``drops.open_drop`` adds to its UPDATE for a draw drop: a seed and its commitment,
    kept if one is set already (COALESCE), so once shown the commitment never changes."""
    seed = new_seed()
    return {
        "draw_seed": func.coalesce(Drop.draw_seed, seed),
        "draw_commitment": func.coalesce(Drop.draw_commitment, commitment_of(seed)),
    }


# Drawing.


@dataclass
class Drawn:
    drop: Drop
    winners: int = 0
    units: int = 0
    not_drawn: int = 0
    by_batch: dict[int, list[tuple[str, int]]] = field(default_factory=dict)


def pay_hours() -> int:
    """A winner's time to pay (``SHOP_DRAW_PAY_HOURS``, at least one hour)."""
    return max(1, current_app.config["SHOP_DRAW_PAY_HOURS"])


def pay_deadline(now: datetime) -> datetime:
    return now + timedelta(hours=pay_hours())


def run_draw(drop: Drop, *, now: datetime) -> Drawn:
    """Draw ``drop`` once: claim it (one compare-and-set on ``drawn_at``, so of two workers
    racing only one draws; the other's UPDATE waits on the row, then finds it drawn), put each
    batch's entries in draw order, hold the units for the winners and write every entrant.
    Raises InvalidState (not a draw, entries still open, drawn already). The caller commits."""
    claimed = db.session.execute(
        update(Drop)
        .where(
            Drop.id == drop.id,
            Drop.mode == DRAW,
            Drop.state != DRAFT,
            Drop.draw_seed.is_not(None),
            Drop.closes_at <= now,
            Drop.drawn_at.is_(None),
        )
        .values(drawn_at=now)
    ).rowcount
    db.session.expire(drop)
    if claimed != 1:
        raise InvalidState(_cannot_draw(drop, now))
    page_cache.content_changed(drop_ids=[drop.id])  # the page now shows the seed
    seed = drop.draw_seed
    if commitment_of(seed) != drop.draw_commitment:  # never draw with a seed not committed to
        raise RuntimeError(f"drop {drop.slug}: the seed does not match its commitment")
    drawn = Drawn(drop)
    for batch in drop.batches:
        entries = {
            e.public_id: e
            for e in db.session.scalars(
                select(DrawEntry).where(DrawEntry.batch_id == batch.id, DrawEntry.state == ENTERED)
            )
        }
        for position, entry_id in enumerate(draw_order(seed, list(entries)), start=1):
            entries[entry_id].position = position
            entries[entry_id].state = WAITING
        batch.draw_units = batch.remaining
        db.session.flush()
        given = _fill(batch, now=now, passed_on=False)
        drawn.by_batch[batch.id] = given
        drawn.winners += len(given)
        drawn.units += sum(units for _entry, units in given)
    for entry in db.session.scalars(
        select(DrawEntry).where(DrawEntry.drop_id == drop.id, DrawEntry.state == WAITING)
    ):
        messages.draw_not_drawn(entry)
        drawn.not_drawn += 1
    db.session.flush()
    return drawn


def _cannot_draw(drop: Drop, now: datetime) -> str:
    if drop.mode != DRAW:
        return f"{drop.title} is not a draw."
    if drop.drawn_at is not None:
        return (
            f"{drop.title} was drawn already ({drop.drawn_at:%Y-%m-%d %H:%M} UTC); "
            "a draw runs once."
        )
    if drop.state == DRAFT or drop.draw_seed is None:
        return f"{drop.title} has not been announced, so it has no committed seed to draw with."
    if drop.closes_at is None or drop.closes_at > now:
        return f"Entries for {drop.title} are still open; the draw runs after they close."
    return f"{drop.title} cannot be drawn now."


def _fill(batch: Batch, *, now: datetime, passed_on: bool) -> list[tuple[str, int]]:
    """Give the batch's free units to its waiting entries in draw order: a personal hold each
    (``passed_on``: units a winner left unpaid) and a message. Returns (entry id, units)."""
    given = []
    remaining = batch.remaining
    waiting = db.session.scalars(
        select(DrawEntry)
        .where(DrawEntry.batch_id == batch.id, DrawEntry.state == WAITING)
        .order_by(DrawEntry.position)
    ).all()
    deadline = pay_deadline(now)
    for entry in waiting:
        if remaining <= 0:
            break
        units = min(entry.quantity, remaining)
        order = inventory.hold_for(
            entry.customer_id, batch.id, units, kind="draw", until=deadline, now=now
        )
        if order is None:  # the stock moved under us; what is left waits for the next pass
            break
        won = db.session.execute(
            update(DrawEntry)
            .where(DrawEntry.id == entry.id, DrawEntry.state == WAITING)
            .values(state=WON, units=units, order_id=order.id, won_at=now, passed_on=passed_on)
        ).rowcount
        if won != 1:  # cannot happen under the drop's lock; never give one entry two holds
            raise RuntimeError(f"draw entry {entry.public_id} changed while being filled")
        db.session.expire(entry)
        messages.draw_won(entry, order, passed_on=passed_on)
        given.append((entry.public_id, units))
        remaining -= units
    db.session.expire(batch)
    return given


def due_draws(now: datetime) -> list[int]:
    """Draw drops whose entries have closed and that have not been drawn."""
    return list(
        db.session.scalars(
            select(Drop.id).where(
                Drop.mode == DRAW,
                Drop.state != DRAFT,
                Drop.draw_seed.is_not(None),
                Drop.closes_at <= now,
                Drop.drawn_at.is_(None),
            )
        )
    )


def pass_on_lapsed(now: datetime) -> int:
    """Winners whose hold ended unpaid (the sweeper released it once Stripe confirmed, or they
    cancelled) lose it; the units go to the next waiting entries in draw order. Per drop, under
    its row lock (SKIP LOCKED: a second worker skips a drop the first is passing on). The
    caller commits. Returns how many entries lapsed."""
    lapsed = db.session.execute(
        select(DrawEntry.id, DrawEntry.drop_id, DrawEntry.batch_id)
        .join(Order, Order.id == DrawEntry.order_id)
        .where(DrawEntry.state == WON, Order.state.in_((EXPIRED, CANCELLED)))
    ).all()
    count = 0
    for drop_id in sorted({row.drop_id for row in lapsed}):
        locked = db.session.scalar(
            select(Drop.id).where(Drop.id == drop_id).with_for_update(skip_locked=True)
        )
        if locked is None:
            continue
        batch_ids = set()
        for row in (r for r in lapsed if r.drop_id == drop_id):
            count += db.session.execute(
                update(DrawEntry)
                .where(DrawEntry.id == row.id, DrawEntry.state == WON)
                .values(state=LAPSED)
            ).rowcount
            batch_ids.add(row.batch_id)
        for batch_id in sorted(batch_ids):
            _fill(db.session.get_one(Batch, batch_id), now=now, passed_on=True)
    db.session.flush()
    return count


# Publishing.


def _published_batch(batch: Batch) -> dict:
    entries = db.session.scalars(
        select(DrawEntry).where(DrawEntry.batch_id == batch.id).order_by(DrawEntry.position)
    ).all()
    first = [e for e in entries if e.won_at is not None and not e.passed_on]
    later = [e for e in entries if e.passed_on]
    return {
        "product": batch.product.slug,
        "batch": batch.number,
        "units": batch.draw_units or 0,
        "entry_count": len(entries),
        "entries": sorted(
            ({"id": e.public_id, "quantity": e.quantity} for e in entries), key=lambda e: e["id"]
        ),
        "winners": [{"id": e.public_id, "units": e.units} for e in first],
        "passed_on": [{"id": e.public_id, "units": e.units} for e in later],
    }


@dataclass
class Row:
    """One line of a batch's published entries: its place in the draw order and what it got."""

    position: int | None
    public_id: str
    quantity: int
    units: int
    state: str
    passed_on: bool


def public_rows(drop: Drop, *, limit: int = 1000) -> dict[int, list[Row]]:
    """Each batch's entries in draw order, for the draw page (after the draw)."""
    if drop.drawn_at is None:
        return {}
    rows: dict[int, list[Row]] = {batch.id: [] for batch in drop.batches}
    for e in db.session.scalars(
        select(DrawEntry)
        .where(DrawEntry.drop_id == drop.id)
        .order_by(DrawEntry.batch_id, DrawEntry.position)
    ):
        if len(rows[e.batch_id]) < limit:
            rows[e.batch_id].append(
                Row(e.position, e.public_id, e.quantity, e.units, e.state, e.passed_on)
            )
    return rows


def look_up(drop: Drop, public_id: str) -> DrawEntry | None:
    """An entry of this draw by its public id (anyone may ask: ids are all published)."""
    return db.session.scalar(
        select(DrawEntry).where(DrawEntry.drop_id == drop.id, DrawEntry.public_id == public_id)
    )


def published(drop: Drop) -> dict:
    """The draw as anyone may check it: the commitment always; after the draw the seed, each
    batch's units and entries (public ids and quantities — no names, no emails), the winners of
    the draw and the entries given units a winner left unpaid, both in draw order."""
    if drop.drawn_at is None:
        counts = entry_counts(drop)
        batches = [
            {
                "product": batch.product.slug,
                "batch": batch.number,
                "units": batch.remaining,
                "entry_count": counts.get(batch.id, 0),
            }
            for batch in drop.batches
        ]
    else:
        batches = [_published_batch(batch) for batch in drop.batches]
    return {
        "format": RULE,
        "rule": RULE_TEXT,
        "drop": drop.slug,
        "title": drop.title,
        "entries_open": _iso(drop.opens_at),
        "entries_close": _iso(drop.closes_at),
        "drawn_at": _iso(drop.drawn_at),
        "commitment": drop.draw_commitment,
        "seed": drop.draw_seed if drop.drawn_at is not None else None,
        "batches": batches,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None

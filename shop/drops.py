"""Drops as their maker runs them: create and edit, assign batches, open, close.

The lifecycle is draft → scheduled → open → closed; only the drop's maker changes it. Whether a
drop is live at an instant is derived, not stored (``Drop.is_live`` and ``Drop.has_opened`` in
``shop.models.drop``). Each transition is one conditional UPDATE of the drop row, so a double
click, a second tab or the CLI racing the console changes the drop once and the loser gets a
clear ``InvalidState``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, case, literal, or_, select, update
from sqlalchemy.orm import selectinload

from shop import audit, database, draws, page_cache, products, slugs
from shop.errors import EditNotAllowed, InvalidInput, InvalidState
from shop.extensions import db
from shop.models import Batch, Drop, Product, User
from shop.models.drop import CLOSED, DRAFT, DRAW, MODES, OPEN, SALE, SCHEDULED
from shop.models.types import UTCDateTime


def drop_for(maker: User, drop_id: int) -> Drop:
    return database.one_or_not_found(
        select(Drop).where(Drop.id == drop_id, Drop.maker_id == maker.id)
    )


def drops_of(maker: User) -> list[Drop]:
    """The maker's drops, newest first."""
    return list(
        db.session.scalars(
            select(Drop)
            .where(Drop.maker_id == maker.id)
            .options(selectinload(Drop.batches).selectinload(Batch.product))
            .order_by(Drop.created_at.desc(), Drop.id.desc())
        )
    )


def assignable_batches(maker: User, drop: Drop | None = None) -> list[Batch]:
    """The maker's batches that are in no drop yet (or already in this one)."""
    condition = Batch.drop_id.is_(None)
    if drop is not None and drop.id is not None:
        condition = or_(condition, Batch.drop_id == drop.id)
    return list(
        db.session.scalars(
            select(Batch)
            .join(Product, Batch.product_id == Product.id)
            .where(Product.maker_id == maker.id, condition)
            .options(selectinload(Batch.product))
            .order_by(Product.name, Batch.number)
        )
    )


@dataclass
class DropDetails:
    title: str
    story: str = ""
    slug: str = ""
    batch_ids: list[int] = field(default_factory=list)
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    allow_promotion_codes: bool = False
    mode: str = SALE


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidInput("Choose how the drop sells: first come, first served, or a draw.")
    return mode


def _check_window(opens_at: datetime | None, closes_at: datetime | None) -> None:
    if opens_at is not None and closes_at is not None and closes_at <= opens_at:
        raise InvalidInput("The closing time must be after the opening time.")


def _drop_slug(details: DropDetails, *, current: Drop | None = None) -> str:
    wanted = (details.slug or "").strip()
    if not wanted:
        if current is not None:
            return current.slug
        return slugs.free_slug(Drop, details.title, fallback="drop")
    slug = slugs.slugify(wanted)
    if not slug:
        raise InvalidInput("Use letters, numbers and dashes for the web address.")
    clash = select(Drop.id).where(Drop.slug == slug)
    if current is not None:
        clash = clash.where(Drop.id != current.id)
    if db.session.scalar(clash) is not None:
        raise InvalidInput(f"The address /drops/{slug} is already taken; choose another.")
    return slug


def create_drop(maker: User, details: DropDetails, *, actor: audit.Actor, now: datetime) -> Drop:
    """A draft drop with its batches; it goes on sale only through :func:`open_drop`."""
    title = (details.title or "").strip()
    if not title:
        raise InvalidInput("Give the drop a title.")
    _check_window(details.opens_at, details.closes_at)
    drop = Drop(
        maker_id=maker.id,
        title=title[:140],
        slug=_drop_slug(details),
        story=details.story or "",
        state=DRAFT,
        opens_at=details.opens_at,
        closes_at=details.closes_at,
        allow_promotion_codes=details.allow_promotion_codes,
        mode=_check_mode(details.mode),
        created_at=now,
    )
    db.session.add(drop)
    database.flush_unique("That web address was just taken; choose another.")
    _assign_batches(maker, drop, details.batch_ids)
    audit.record("drop.created", actor=actor, drop=drop)
    db.session.flush()
    return drop


def update_drop(drop: Drop, details: DropDetails, *, actor: audit.Actor, now: datetime) -> None:
    """Title and story can always change. The address, batches and planned window can change
    only while the drop is a draft; after that the open/close steps move the window."""
    title = (details.title or "").strip()
    if not title:
        raise InvalidInput("Give the drop a title.")
    draft = drop.state == DRAFT
    if not draft:
        wanted_ids = sorted(set(details.batch_ids))
        current_ids = sorted(b.id for b in drop.batches)
        if wanted_ids != current_ids:
            raise EditNotAllowed(
                "Batches can't be added or removed once a drop is scheduled or open. "
                "Start a new drop for other batches."
            )
        if details.slug and slugs.slugify(details.slug) != drop.slug:
            raise EditNotAllowed("The web address can't change once the drop has been announced.")
        if details.mode != drop.mode:
            raise EditNotAllowed(
                "A drop can't switch between a draw and first come, first served once it has "
                "been announced."
            )
    changed = []
    if drop.title != title[:140]:
        changed.append("title")
    if drop.story != (details.story or ""):
        changed.append("story")
    if drop.allow_promotion_codes != details.allow_promotion_codes:
        changed.append(f"promotion codes (now {'on' if details.allow_promotion_codes else 'off'})")
        drop.allow_promotion_codes = details.allow_promotion_codes
    drop.title = title[:140]
    drop.story = details.story or ""
    if draft:
        _check_window(details.opens_at, details.closes_at)
        before = (
            drop.slug,
            drop.opens_at,
            drop.closes_at,
            sorted(b.id for b in drop.batches),
            drop.mode,
        )
        drop.mode = _check_mode(details.mode)
        drop.slug = _drop_slug(details, current=drop)
        drop.opens_at = details.opens_at
        drop.closes_at = details.closes_at
        database.flush_unique("That web address was just taken; choose another.")
        _assign_batches(drop.maker, drop, details.batch_ids)
        after = (
            drop.slug,
            drop.opens_at,
            drop.closes_at,
            sorted(b.id for b in drop.batches),
            drop.mode,
        )
        names = ("address", "planned opening", "planned closing", "batches", "mode")
        changed += [name for name, old, new in zip(names, before, after, strict=True) if old != new]
    db.session.flush()
    page_cache.content_changed(drop_ids=[drop.id])
    if changed:
        audit.record("drop.edited", actor=actor, drop=drop, detail=", ".join(changed) + " edited")
        db.session.flush()


def _assign_batches(maker: User, drop: Drop, batch_ids: Iterable[int]) -> None:
    """Make exactly ``batch_ids`` the drop's batches. Taking a batch is a conditional UPDATE,
    so two drops created at once in two tabs can't both claim it."""
    wanted = set(batch_ids)
    for batch in list(drop.batches):
        if batch.id not in wanted:
            batch.drop_id = None
            batch.follows_batch_id = None
        elif batch.follows_batch_id is not None and batch.follows_batch_id not in wanted:
            batch.follows_batch_id = None  # the batch it waited for left the drop
    db.session.flush()
    for batch_id in sorted(wanted):
        batch = products.batch_for(maker, batch_id)
        taken = db.session.execute(
            update(Batch)
            .where(Batch.id == batch.id, or_(Batch.drop_id.is_(None), Batch.drop_id == drop.id))
            .values(drop_id=drop.id)
        ).rowcount
        if taken != 1:
            raise EditNotAllowed(f"{batch.title} is already in another drop.")
    db.session.expire(drop, ["batches"])
    for batch in db.session.identity_map.values():
        if isinstance(batch, Batch):
            db.session.expire(batch, ["drop_id", "drop"])


def _update(drop: Drop, condition, values: dict) -> bool:
    """One compare-and-set UPDATE of the drop row; True when it changed the drop."""
    changed = db.session.execute(
        update(Drop).where(Drop.id == drop.id, condition).values(**values)
    ).rowcount
    if changed:
        page_cache.content_changed(drop_ids=[drop.id])
    db.session.expire(drop)
    return changed == 1


def open_drop(drop: Drop, *, actor: audit.Actor, now: datetime, at: datetime | None = None) -> None:
    """Open now, or schedule the opening for ``at``; the window decides when it goes live.

    A scheduled drop that hasn't opened yet can be rescheduled or opened now; a live or closed
    one can't be opened again.
    """
    _refuse_to_open(drop, now)
    if not drop.batches:
        raise InvalidState("Add at least one batch before opening the drop.")
    opens_at = now if at is None or at <= now else at
    if drop.closes_at is not None and drop.closes_at <= opens_at:
        raise InvalidState("The drop would close before it opens; move the closing time first.")
    if drop.mode == DRAW and drop.closes_at is None:
        raise InvalidState(
            "A draw needs a time when entries close (the closing time): set it first, then "
            "open or schedule the drop."
        )
    state = OPEN if opens_at <= now else SCHEDULED
    # A draw's seed is set here, once (kept if set before); its commitment is public from now.
    seed = draws.seed_values() if drop.mode == DRAW else {}
    opened = _update(
        drop,
        and_(
            or_(Drop.state == DRAFT, and_(Drop.state == SCHEDULED, Drop.opens_at > now)),
            or_(Drop.closes_at.is_(None), Drop.closes_at > opens_at),
        ),
        {"state": state, "opens_at": opens_at, **seed},
    )
    if not opened:  # someone else opened or closed it a moment ago
        _refuse_to_open(drop, now)
        raise InvalidState("The drop changed while you were opening it; reload and try again.")
    audit.record(
        "drop.opened" if state == OPEN else "drop.scheduled",
        actor=actor,
        drop=drop,
        detail=f"opens {opens_at.isoformat()}",
    )
    db.session.flush()


def _refuse_to_open(drop: Drop, now: datetime) -> None:
    if drop.state == CLOSED or drop.phase(now) == CLOSED:
        raise InvalidState("A closed drop stays closed — start a new drop to sell again.")
    if drop.in_window(now):
        raise InvalidState("This drop is already open.")


def close_drop(
    drop: Drop, *, actor: audit.Actor, now: datetime, at: datetime | None = None
) -> None:
    """Close now (no hold is created after this commits) or schedule the close for ``at``.

    Holds taken before the close may still be paid until they expire (invariant 7 in
    docs/ARCHITECTURE.md). A drop that never opened can't be closed (nothing was on sale): put a
    scheduled one back to draft.
    """
    if drop.state == CLOSED or drop.phase(now) == CLOSED:
        # A drop whose closing time has passed is closed too; a new time must not reopen it.
        raise InvalidState("This drop is already closed.")
    if at is not None and at > now:
        if drop.opens_at is not None and at <= drop.opens_at:
            raise InvalidState("The closing time must be after the opening time.")
        drop.closes_at = at
        db.session.flush()
        page_cache.content_changed(drop_ids=[drop.id])
        audit.record(
            "drop.close_scheduled", actor=actor, drop=drop, detail=f"closes {at.isoformat()}"
        )
        db.session.flush()
        return
    if drop.state == DRAFT or drop.opens_at is None or drop.opens_at >= now:
        raise InvalidState(
            "This drop hasn't opened yet, so there is nothing to close. "
            "Move it back to draft instead if it shouldn't open."
        )
    # One UPDATE of the drop row: it waits for holds that share-locked the row, and every
    # later hold sees the closed state. The state condition makes a second close a no-op.
    closed = _update(
        drop,
        Drop.state != CLOSED,
        {
            "state": CLOSED,
            "closed_at": now,
            "closes_at": case(
                (or_(Drop.closes_at.is_(None), Drop.closes_at > now), literal(now, UTCDateTime())),
                else_=Drop.closes_at,
            ),
        },
    )
    if not closed:
        raise InvalidState("This drop is already closed.")
    audit.record("drop.closed", actor=actor, drop=drop)
    db.session.flush()


def unschedule_drop(drop: Drop, *, actor: audit.Actor, now: datetime) -> None:
    """A scheduled drop that hasn't opened yet goes back to being a draft."""
    if not _update(drop, and_(Drop.state == SCHEDULED, Drop.opens_at > now), {"state": DRAFT}):
        raise InvalidState("Only a drop that is scheduled and not yet open can go back to draft.")
    audit.record("drop.unscheduled", actor=actor, drop=drop, detail="back to draft")
    db.session.flush()


def cancel_scheduled_close(drop: Drop, *, actor: audit.Actor, now: datetime) -> None:
    """Remove a closing time that hasn't come yet; the drop then stays open until closed."""
    if drop.mode == DRAW:
        raise InvalidState("A draw's entries must close at a time; move the closing time instead.")
    if not _update(drop, and_(Drop.state != CLOSED, Drop.closes_at > now), {"closes_at": None}):
        raise InvalidState("There is no future closing time to remove.")
    audit.record("drop.close_unscheduled", actor=actor, drop=drop)
    db.session.flush()


def line_up(
    drop: Drop, batch_id: int, after_id: int | None, *, actor: audit.Actor, now: datetime
) -> Batch:
    """Put a batch on sale only when an earlier batch of its product in this drop sells out
    (``after_id``), or from the opening (None). Only before the drop opens: once customers may
    buy, what is on sale stays as announced."""
    if drop.has_opened(now):
        raise EditNotAllowed("Batches can't be lined up once the drop has opened.")
    batch = next((b for b in drop.batches if b.id == batch_id), None)
    if batch is None:
        raise InvalidInput("That batch isn't in this drop.")
    if after_id is None:
        batch.follows_batch_id = None
        detail = f"Batch No. {batch.number} on sale from the opening"
    else:
        ahead = next((b for b in drop.batches if b.id == after_id), None)
        if ahead is None or ahead.product_id != batch.product_id or ahead.number >= batch.number:
            raise InvalidInput(
                "A batch can only wait for an earlier batch of the same product in this drop."
            )
        batch.follows_batch_id = ahead.id
        detail = f"Batch No. {batch.number} goes on sale when No. {ahead.number} sells out"
    db.session.flush()
    page_cache.content_changed(drop_ids=[drop.id])
    audit.record("batch.lined_up", actor=actor, batch=batch, detail=detail)
    db.session.flush()
    return batch

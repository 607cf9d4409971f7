"""Drop lifecycle: draft → scheduled → open → closed. Only the drop's maker changes it.

Each transition is one conditional UPDATE of the drop row, so a double click, a second tab or
the CLI racing the console changes the drop once and the loser gets a clear ``InvalidState``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, text

from shop import audit
from shop.errors import InvalidState
from shop.extensions import db
from shop.models import Drop, User
from shop.models.drop import CLOSED, DRAFT, OPEN, SCHEDULED
from shop.models.types import UTCDateTime


def _sql(statement: str):
    names = [name for name in ("now", "opens_at") if f":{name}" in statement]
    return text(statement).bindparams(*(bindparam(n, type_=UTCDateTime()) for n in names))


def _update(drop: Drop, statement: str, values: dict) -> bool:
    """Run one conditional UPDATE of the drop row; True when it changed the drop."""
    changed = db.session.execute(_sql(statement), {"id": drop.id, **values}).rowcount
    db.session.expire(drop)
    return changed == 1


def open_drop(drop: Drop, *, actor: User | None, now: datetime, at: datetime | None = None) -> None:
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
    state = OPEN if opens_at <= now else SCHEDULED
    opened = _update(
        drop,
        "UPDATE drops SET state = :state, opens_at = :opens_at "
        "WHERE id = :id AND (state = 'draft' OR (state = 'scheduled' AND opens_at > :now)) "
        "AND (closes_at IS NULL OR closes_at > :opens_at)",
        {"state": state, "opens_at": opens_at, "now": now},
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
    if drop.is_live(now):
        raise InvalidState("This drop is already open.")


def close_drop(
    drop: Drop, *, actor: User | None, now: datetime, at: datetime | None = None
) -> None:
    """Close now (no hold is created after this commits) or schedule the close for ``at``.

    Holds taken before the close may still be paid until they expire (DESIGN §2.7). A drop that
    never opened can't be closed (nothing was on sale): put a scheduled one back to draft.
    """
    if drop.state == CLOSED or drop.phase(now) == CLOSED:
        # A drop whose closing time has passed is closed too; a new time must not reopen it.
        raise InvalidState("This drop is already closed.")
    if at is not None and at > now:
        if drop.opens_at is not None and at <= drop.opens_at:
            raise InvalidState("The closing time must be after the opening time.")
        drop.closes_at = at
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
        "UPDATE drops SET state = 'closed', closed_at = :now, "
        "closes_at = CASE WHEN closes_at IS NULL OR closes_at > :now THEN :now "
        "ELSE closes_at END "
        "WHERE id = :id AND state <> 'closed'",
        {"now": now},
    )
    if not closed:
        raise InvalidState("This drop is already closed.")
    audit.record("drop.closed", actor=actor, drop=drop)
    db.session.flush()


def unschedule_drop(drop: Drop, *, actor: User, now: datetime) -> None:
    """A scheduled drop that hasn't opened yet goes back to being a draft."""
    if not _update(
        drop,
        "UPDATE drops SET state = 'draft' WHERE id = :id AND state = 'scheduled' "
        "AND opens_at > :now",
        {"now": now},
    ):
        raise InvalidState("Only a drop that is scheduled and not yet open can go back to draft.")
    audit.record("drop.unscheduled", actor=actor, drop=drop, detail="back to draft")
    db.session.flush()


def cancel_scheduled_close(drop: Drop, *, actor: User, now: datetime) -> None:
    """Remove a closing time that hasn't come yet; the drop then stays open until closed."""
    if not _update(
        drop,
        "UPDATE drops SET closes_at = NULL WHERE id = :id AND state <> 'closed' "
        "AND closes_at > :now",
        {"now": now},
    ):
        raise InvalidState("There is no future closing time to remove.")
    audit.record("drop.close_unscheduled", actor=actor, drop=drop)
    db.session.flush()

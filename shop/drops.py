"""Drop lifecycle: draft → scheduled → open → closed. Only the drop's maker changes it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, text

from shop import audit
from shop.errors import InvalidState
from shop.extensions import db
from shop.models import Drop, User
from shop.models.drop import CLOSED, OPEN, SCHEDULED
from shop.models.types import UTCDateTime


def open_drop(drop: Drop, *, actor: User | None, now: datetime, at: datetime | None = None) -> None:
    """Open now, or schedule the opening for ``at``; the window decides when it goes live."""
    if drop.state == CLOSED or drop.phase(now) == CLOSED:
        raise InvalidState("A closed drop stays closed — start a new drop to sell again.")
    if not drop.batches:
        raise InvalidState("Add at least one batch before opening the drop.")
    opens_at = now if at is None or at <= now else at
    if drop.closes_at is not None and drop.closes_at <= opens_at:
        raise InvalidState("The drop would close before it opens; move the closing time first.")
    drop.opens_at = opens_at
    drop.state = OPEN if opens_at <= now else SCHEDULED
    audit.record(
        "drop.opened" if drop.state == OPEN else "drop.scheduled",
        actor=actor,
        drop=drop,
        detail=f"opens {opens_at.isoformat()}",
    )
    db.session.flush()


def close_drop(
    drop: Drop, *, actor: User | None, now: datetime, at: datetime | None = None
) -> None:
    """Close now (no hold is created after this commits) or schedule the close for ``at``.

    Holds taken before the close may still be paid until they expire (DESIGN §2.7).
    """
    if drop.state == CLOSED:
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
    # One UPDATE of the drop row: it waits for holds that share-locked the row, and every
    # later hold sees the closed state.
    db.session.execute(
        text(
            "UPDATE drops SET state = 'closed', closed_at = :now, "
            "closes_at = CASE WHEN closes_at IS NULL OR closes_at > :now THEN :now "
            "ELSE closes_at END, "
            "opens_at = CASE WHEN opens_at IS NULL OR opens_at > :now THEN :now "
            "ELSE opens_at END "
            "WHERE id = :id"
        ).bindparams(bindparam("now", type_=UTCDateTime())),
        {"now": now, "id": drop.id},
    )
    db.session.expire(drop)
    audit.record("drop.closed", actor=actor, drop=drop)
    db.session.flush()

"""Release events: a drop puts one or more batches on sale in a window."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop import clock
from shop.extensions import db
from shop.models.types import UTCDateTime

if TYPE_CHECKING:
    from shop.models.catalog import Batch
    from shop.models.user import User

DRAFT = "draft"
SCHEDULED = "scheduled"
OPEN = "open"
CLOSED = "closed"
STATES = (DRAFT, SCHEDULED, OPEN, CLOSED)

# The waiting room (shop/waiting_room.py): opens by itself under a crowd, always, or never.
ROOM_AUTO = "auto"
ROOM_ON = "on"
ROOM_OFF = "off"
ROOM_MODES = (ROOM_AUTO, ROOM_ON, ROOM_OFF)
# How a drop sells: first come, first served, or a draw among the entries made in its window.
SALE = "sale"
DRAW = "draw"
MODES = (SALE, DRAW)


def drop_phase(
    state: str, opens_at: datetime | None, closes_at: datetime | None, now: datetime
) -> str:
    """THE rule for what a visitor sees — draft, upcoming, live or closed — from the stored
    state and window (``Drop.phase``; the page cache applies it to a cached drop's state)."""
    if state == DRAFT:
        return DRAFT
    if state == CLOSED or (closes_at is not None and now >= closes_at):
        return CLOSED
    if opens_at is not None and opens_at <= now:
        return "live"
    return "upcoming"


class Drop(db.Model):
    """``state`` is what the maker decided; whether the drop is *live* at an instant is derived
    from it and the window, so a scheduled drop opens on the second with no job running."""

    __tablename__ = "drops"
    __table_args__ = (
        CheckConstraint("state IN ('draft', 'scheduled', 'open', 'closed')", name="state_known"),
        CheckConstraint(
            "closes_at IS NULL OR opens_at IS NULL OR closes_at > opens_at", name="window_ordered"
        ),
        CheckConstraint("waiting_room IN ('auto', 'on', 'off')", name="waiting_room_known"),
        CheckConstraint("mode IN ('sale', 'draw')", name="mode_known"),
        # The seed and its commitment are set together, once (shop/draws.py).
        CheckConstraint(
            "(draw_seed IS NULL) = (draw_commitment IS NULL)", name="seed_with_commitment"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    maker_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(140))
    slug: Mapped[str] = mapped_column(String(160), unique=True)
    story: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default=DRAFT)
    opens_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    allow_promotion_codes: Mapped[bool] = mapped_column(default=False)
    # When the worker wrote "The drop is live" for every subscriber (once per drop).
    live_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    # True while the operator has suspended the drop's maker: it sells nothing (the hold's
    # liveness rule reads this row, so no join on the maker is needed on the hot path).
    suspended: Mapped[bool] = mapped_column(default=False, server_default=false())
    waiting_room: Mapped[str] = mapped_column(
        String(8), default=ROOM_AUTO, server_default=ROOM_AUTO
    )
    # A draw drop takes entries in its window instead of buys (shop/draws.py). The seed is
    # secret until the draw; its SHA-256 (the commitment) is public from the announcement on.
    mode: Mapped[str] = mapped_column(String(8), default=SALE, server_default=SALE)
    draw_seed: Mapped[str | None] = mapped_column(String(64))
    draw_commitment: Mapped[str | None] = mapped_column(String(64))
    drawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped in the same transaction as any edit to what the drop page shows
    # (``page_cache.content_changed``): the shared page cache is keyed by it.
    content_version: Mapped[int] = mapped_column(default=0, server_default="0")

    maker: Mapped[User] = relationship()
    batches: Mapped[list[Batch]] = relationship(back_populates="drop", order_by="Batch.id")

    @property
    def is_draw(self) -> bool:
        return self.mode == DRAW

    def is_live(self, now: datetime) -> bool:
        """Customers can buy now (a draw drop never sells to the crowd)."""
        return self.mode == SALE and self.in_window(now)

    def in_window(self, now: datetime) -> bool:
        """On sale (or, for a draw, taking entries): put on sale, not suspended, in the window."""
        return (
            self.state in (SCHEDULED, OPEN)
            and not self.suspended
            and self.opens_at is not None
            and self.opens_at <= now
            and (self.closes_at is None or now < self.closes_at)
        )

    def has_opened(self, now: datetime) -> bool:
        """True once customers could have bought from the drop (it is live or was): from then
        on a batch's number and currency are fixed and its edition may not shrink below sales."""
        if self.state == CLOSED:
            return True
        return (
            self.state in (SCHEDULED, OPEN) and self.opens_at is not None and self.opens_at <= now
        )

    def phase(self, now: datetime) -> str:
        """What a visitor sees: draft, upcoming, live or closed."""
        return drop_phase(self.state, self.opens_at, self.closes_at, now)

    def __repr__(self) -> str:
        return f"<Drop {self.slug} {self.state}>"

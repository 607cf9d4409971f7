"""A draw's entries: one per account and batch, ranked by the draw (shop/draws.py)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop import clock
from shop.extensions import db
from shop.models.types import UTCDateTime

if TYPE_CHECKING:
    from shop.models.catalog import Batch
    from shop.models.order import Order
    from shop.models.user import User

ENTERED = "entered"  # in the draw, not drawn yet
WON = "won"  # drawn: a personal hold of ``units`` to pay for by the deadline
WAITING = "waiting"  # not drawn: next in line, in draw order, if a winner does not pay
LAPSED = "lapsed"  # drawn, but the hold ran out unpaid; the units went down the line
ENTRY_STATES = (ENTERED, WON, WAITING, LAPSED)


def new_entry_id() -> str:
    return secrets.token_urlsafe(12)


class DrawEntry(db.Model):
    """A customer's entry in the draw for one batch. ``public_id`` is what the published draw
    lists (never a name or an email); ``position`` is its place in the draw order."""

    __tablename__ = "draw_entries"
    __table_args__ = (
        UniqueConstraint("batch_id", "customer_id"),  # one entry per account
        UniqueConstraint("batch_id", "position"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("units >= 0 AND units <= quantity", name="units_within_quantity"),
        CheckConstraint("state IN ('entered', 'won', 'waiting', 'lapsed')", name="state_known"),
        Index("ix_draw_entries_drop_id_state", "drop_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_entry_id)
    drop_id: Mapped[int] = mapped_column(ForeignKey("drops.id"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    quantity: Mapped[int]
    state: Mapped[str] = mapped_column(String(8), default=ENTERED)
    position: Mapped[int | None]
    units: Mapped[int] = mapped_column(default=0)  # units given to it (won, or passed down)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    won_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Given units a winner left unpaid, after the draw (not one of the draw's own winners).
    passed_on: Mapped[bool] = mapped_column(default=False)

    batch: Mapped[Batch] = relationship()
    customer: Mapped[User] = relationship()
    order: Mapped[Order | None] = relationship()

    def __repr__(self) -> str:
        return f"<DrawEntry {self.public_id} {self.state}>"

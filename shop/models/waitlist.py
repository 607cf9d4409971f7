"""The waitlist: customers in line for a sold-out batch, offered its freed units in turn."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ColumnElement, ForeignKey, Index, String, or_, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop import clock
from shop.extensions import db
from shop.models.types import UTCDateTime

if TYPE_CHECKING:
    from shop.models.catalog import Batch
    from shop.models.order import Order
    from shop.models.user import User

WAITING = "waiting"  # in line
OFFERED = "offered"  # units held for them (``order``) until the offer's deadline
LEFT = "left"  # they left the line (or turned the offer down)
LAPSED = "lapsed"  # the offer ran out unpaid: the units moved on
BOUGHT = "bought"  # they paid for the offer
ENDED = "ended"  # the line closed: the batch sold for good, or its drop closed
STATES = (WAITING, OFFERED, LEFT, LAPSED, BOUGHT, ENDED)
ACTIVE = (WAITING, OFFERED)
ACTIVE_SQL = "state IN ('waiting', 'offered')"


class WaitlistPlace(db.Model):
    """One customer's place in line for a batch, in arrival order (``id``); one active place
    per account and batch (a partial UNIQUE index)."""

    __tablename__ = "waitlist_places"
    __table_args__ = (
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint(
            "state IN ('waiting', 'offered', 'left', 'lapsed', 'bought', 'ended')",
            name="state_known",
        ),
        CheckConstraint(
            "(state = 'waiting') = (order_id IS NULL) OR state IN ('left', 'ended')",
            name="offer_has_order",
        ),
        Index("ix_waitlist_places_line", "batch_id", "state", "id"),
        Index(
            "uq_waitlist_places_one_per_account",
            "batch_id",
            "customer_id",
            unique=True,
            sqlite_where=text(ACTIVE_SQL),
            postgresql_where=text(ACTIVE_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The offer link's id: unguessable, and only ever shown to its customer.
    public_id: Mapped[str] = mapped_column(
        String(32), unique=True, default=lambda: secrets.token_urlsafe(16)
    )
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    quantity: Mapped[int]  # how many they would buy; an offer may hold fewer
    state: Mapped[str] = mapped_column(String(16), default=WAITING)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    batch: Mapped[Batch] = relationship()
    customer: Mapped[User] = relationship()
    order: Mapped[Order | None] = relationship()

    def __repr__(self) -> str:
        return f"<WaitlistPlace {self.id} {self.state}>"


def is_active() -> ColumnElement[bool]:
    """A place in one of the ACTIVE states, each compared as a value bound once (no expanding
    list), so a statement holding it can go straight to the driver (``database.read_row``)."""
    return or_(*(WaitlistPlace.state == state for state in ACTIVE))

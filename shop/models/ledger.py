"""The public record of an edition: every change to a batch's size after it went on sale, and
the outcome of each reconciliation of the counters against orders and units (shop/ledger.py)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop import clock
from shop.extensions import db
from shop.models.types import UTCDateTime

if TYPE_CHECKING:
    from shop.models.catalog import Batch


class EditionChange(db.Model):
    """A batch's edition size changed once its drop was published: from, to, when and why (the
    reason is required once the drop has opened, and shown on the public ledger)."""

    __tablename__ = "edition_changes"
    __table_args__ = (
        CheckConstraint("from_size >= 1 AND to_size >= 1", name="sizes_positive"),
        CheckConstraint("from_size <> to_size", name="a_change"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    from_size: Mapped[int]
    to_size: Mapped[int]
    reason: Mapped[str] = mapped_column(Text, default="")
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    batch: Mapped[Batch] = relationship()


class LedgerCheck(db.Model):
    """One run of ``shop ledger --check``: how many batches, how many did not reconcile, and
    the line for each that did not."""

    __tablename__ = "ledger_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    batches: Mapped[int]
    mismatches: Mapped[int]
    report: Mapped[str] = mapped_column(Text, default="")

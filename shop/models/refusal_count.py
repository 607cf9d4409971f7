"""Buy attempts the shop refused, counted per batch and reason (what the report after a drop
shows). Written by the worker in bulk, never by the refused request itself: see
``shop/refusal_counts.py``."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from shop.extensions import db


class RefusalCount(db.Model):
    __tablename__ = "refusal_counts"
    __table_args__ = (CheckConstraint("count >= 0", name="count_not_negative"),)

    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)

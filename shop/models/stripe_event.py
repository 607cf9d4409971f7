"""Webhook events already processed; the primary key makes each one count once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from shop import clock
from shop.extensions import db
from shop.models.types import UTCDateTime


class StripeEvent(db.Model):
    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(80))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

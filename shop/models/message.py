"""Outgoing email: the outbox, and who asked to hear when a drop opens."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop import clock
from shop.extensions import db
from shop.models.types import UTCDateTime

if TYPE_CHECKING:
    from shop.models.drop import Drop
    from shop.models.order import Order

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
STATES = (PENDING, SENT, FAILED)


def new_unsubscribe_token() -> str:
    return secrets.token_urlsafe(24)


class Message(db.Model):
    """One email, written in the same transaction as the event that causes it and sent later by
    the worker. Rendered when written, so a retry sends exactly what the event said."""

    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'sent', 'failed')", name="state_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The worker's claim: due messages in order.
        Index("ix_messages_state_available_at", "state", "available_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    # Extra headers (List-Unsubscribe …); never built from user input that may carry CR/LF.
    headers: Mapped[dict | None] = mapped_column(JSON)
    # One message per cause (``order-paid:17``): a second write of the same event adds nothing.
    dedupe_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    order: Mapped[Order | None] = relationship()

    def __repr__(self) -> str:
        return f"<Message {self.id} {self.kind} {self.state}>"


class DropSubscription(db.Model):
    """An address that asked to hear when a drop goes live. A visitor's address counts only once
    confirmed (double opt-in); a signed-in customer's is confirmed by their verified account."""

    __tablename__ = "drop_subscriptions"
    __table_args__ = (UniqueConstraint("drop_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    drop_id: Mapped[int] = mapped_column(ForeignKey("drops.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The secret in this subscriber's unsubscribe and confirm links: nobody else's link works.
    token: Mapped[str] = mapped_column(String(64), unique=True, default=new_unsubscribe_token)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    drop: Mapped[Drop] = relationship()

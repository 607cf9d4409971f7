"""Paid Checkout Sessions the shop did not create: recorded for the operator, never touched."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from shop import clock
from shop.extensions import db
from shop.models.types import UTCDateTime


class UnrecognisedPayment(db.Model):
    """One foreign session (another integration on the same Stripe account, a Payment Link, a
    staging copy on the same keys), as Stripe reported it when its event first reached us.

    Nothing here came from a webhook body: the facts are read from Stripe. ``client_reference_id``
    and ``metadata_order`` are kept as found; when they name one of our orders, someone may be
    imitating the shop, which is worth the operator's eye.
    """

    __tablename__ = "unrecognised_payments"

    session_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_id: Mapped[str | None] = mapped_column(String(255))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    amount_total: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    client_reference_id: Mapped[str | None] = mapped_column(String(255))
    metadata_order: Mapped[str | None] = mapped_column(String(255))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

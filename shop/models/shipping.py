"""What shipping costs: a maker's rates per zone (a set of countries), optionally per batch."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop import clock
from shop.extensions import db
from shop.models.types import UTCDateTime

if TYPE_CHECKING:
    from shop.models.catalog import Batch
    from shop.models.user import User


class ShippingRate(db.Model):
    """A flat rate for one zone. A maker's rates (``batch_id`` NULL) apply to every batch that
    has none of its own; a batch's own rates replace them entirely."""

    __tablename__ = "shipping_rates"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("free_above IS NULL OR free_above > 0", name="free_above_positive"),
        CheckConstraint(
            "min_days IS NULL OR max_days IS NULL OR min_days <= max_days", name="days_ordered"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    maker_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    countries: Mapped[str] = mapped_column(Text)  # "AT,DE,FR": ISO 3166-1 alpha-2, sorted
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    free_above: Mapped[int | None]
    min_days: Mapped[int | None]
    max_days: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    maker: Mapped[User] = relationship()
    batch: Mapped[Batch | None] = relationship()

    @property
    def country_codes(self) -> list[str]:
        return [code for code in self.countries.split(",") if code]

    def cost_for(self, goods_amount: int) -> int:
        """The charge for an order of ``goods_amount``: free above the threshold, if set."""
        if self.free_above is not None and goods_amount >= self.free_above:
            return 0
        return self.amount

    def __repr__(self) -> str:
        return f"<ShippingRate {self.name} {self.countries}>"

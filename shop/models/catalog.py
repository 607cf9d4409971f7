"""What makers make: products and their numbered batches."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop import clock, money
from shop.extensions import db
from shop.models.types import UTCDateTime

if TYPE_CHECKING:
    from shop.models.drop import Drop
    from shop.models.user import User


class Product(db.Model):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    maker_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(140), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    maker: Mapped[User] = relationship()
    batches: Mapped[list[Batch]] = relationship(back_populates="product", order_by="Batch.number")

    def __repr__(self) -> str:
        return f"<Product {self.slug}>"


class Batch(db.Model):
    """One numbered production run: the unit of scarcity. ``sold``/``held``/``reserved``
    change only in ``shop.inventory``; CHECK constraints make overselling impossible."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("product_id", "number"),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("edition_size >= 1", name="edition_size_positive"),
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint(f"price <= {money.MAX_PRICE}", name="price_at_most_max"),
        CheckConstraint("per_customer_limit >= 1", name="limit_positive"),
        CheckConstraint("sold >= 0", name="sold_not_negative"),
        CheckConstraint("held >= 0", name="held_not_negative"),
        CheckConstraint("sold + held + reserved <= edition_size", name="no_oversell"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("waiting >= 0", name="waiting_not_negative"),
        # Units are set aside only for people in line; the last to leave the line frees them.
        CheckConstraint("reserved = 0 OR waiting > 0", name="reserved_only_while_waiting"),
        CheckConstraint(
            "minimum_age IS NULL OR (minimum_age >= 1 AND minimum_age <= 99)",
            name="minimum_age_sane",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    drop_id: Mapped[int | None] = mapped_column(ForeignKey("drops.id"), index=True)
    number: Mapped[int]
    edition_size: Mapped[int]
    unit_label: Mapped[str] = mapped_column(String(32), default="units")  # plural: "bottles"
    unit_singular: Mapped[str] = mapped_column(String(32), default="unit")  # one: "bottle"
    price: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    per_customer_limit: Mapped[int] = mapped_column(default=2)
    story: Mapped[str] = mapped_column(Text, default="")
    summary: Mapped[str] = mapped_column(String(280), default="")
    origin_place: Mapped[str] = mapped_column(String(160), default="")
    produced_on: Mapped[date | None]
    inputs: Mapped[str] = mapped_column(Text, default="")
    process: Mapped[str] = mapped_column(Text, default="")
    sold: Mapped[int] = mapped_column(default=0)
    held: Mapped[int] = mapped_column(default=0)
    # Units freed while customers wait in line for the batch (``shop/waitlist.py``): set aside
    # for them, never back to the crowd, until offered; and how many places still wait.
    reserved: Mapped[int] = mapped_column(default=0, server_default="0")
    waiting: Mapped[int] = mapped_column(default=0, server_default="0")
    # Where it may go ("GB,IE,US"; empty: the shop's SHOP_SHIPPING_COUNTRIES) and who may buy.
    ships_to: Mapped[str] = mapped_column(String(400), default="")
    minimum_age: Mapped[int | None]
    tax_code: Mapped[str | None] = mapped_column(String(32))  # Stripe Tax product tax code
    # Lined up in its drop behind an earlier batch of the product: on sale only while that one
    # has nothing left to sell (decided in the hold statement, ``holds.ON_SALE``).
    follows_batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    # In a draw drop: the units the draw gave out (what was left when it ran), published.
    draw_units: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    product: Mapped[Product] = relationship(back_populates="batches")
    drop: Mapped[Drop | None] = relationship(back_populates="batches")
    images: Mapped[list[BatchImage]] = relationship(
        back_populates="batch", order_by="BatchImage.position", cascade="all, delete-orphan"
    )
    follows: Mapped[Batch | None] = relationship(remote_side="Batch.id")

    @property
    def remaining(self) -> int:
        """What the crowd may still buy: neither sold, held nor set aside for the waitlist."""
        return self.edition_size - self.sold - self.held - self.reserved

    @property
    def sold_out(self) -> bool:
        return self.remaining <= 0

    @property
    def waiting_for(self) -> Batch | None:
        """The batch this one waits to sell out before it goes on sale, while it has units
        left; the same rule as ``holds.ON_SALE`` (tests/integration/test_next_batch.py)."""
        ahead = self.follows
        return ahead if ahead is not None and ahead.remaining > 0 else None

    @property
    def title(self) -> str:
        return f"{self.product.name}, Batch No. {self.number}"

    @property
    def ship_to_codes(self) -> list[str]:
        """Countries this batch itself is limited to (empty: no limit of its own)."""
        return [code for code in self.ships_to.split(",") if code]

    def unit_word(self, count: int) -> str:
        """What ``count`` units are called: "bottle" for one, "bottles" otherwise."""
        return (self.unit_singular or "unit") if count == 1 else (self.unit_label or "units")

    def units_of(self, count: int) -> str:
        """ "1 bottle", "240 bottles"."""
        return f"{count} {self.unit_word(count)}"

    def __repr__(self) -> str:
        return f"<Batch {self.product_id}#{self.number}>"


class ImageBlob(db.Model):
    """The bytes of one re-encoded picture, stored once under their SHA-256 (``digest``),
    whichever batches show it. ``data`` is NULL when the bytes live in an S3-compatible bucket
    (``SHOP_IMAGE_STORE=s3``, shop/image_store.py); the row is kept either way, so every app
    host knows what exists and ``batch_images`` can reference it."""

    __tablename__ = "image_blobs"
    __table_args__ = (CheckConstraint("size >= 0", name="size_not_negative"),)

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int]
    data: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class BatchImage(db.Model):
    """An uploaded picture of a batch: its description, place and size, and ``digest``, the
    stored bytes it shows (NULL only for a file from before images moved into the store, until
    ``flask shop images migrate`` moves it). ``filename`` is the name it is served under,
    ``<digest>.<ext>`` (or the random name an older upload was given).

    ``slot`` is the cap on a batch's pictures, kept by the database: each picture takes a slot
    below ``products.MAX_IMAGES_PER_BATCH``, UNIQUE per batch, so parallel uploads can't hold
    more pictures than there are slots. ``position`` is only the order they are shown in."""

    __tablename__ = "batch_images"
    __table_args__ = (
        UniqueConstraint("batch_id", "slot"),
        CheckConstraint("slot >= 0", name="slot_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    slot: Mapped[int] = mapped_column(SmallInteger)
    filename: Mapped[str] = mapped_column(String(80), index=True)
    digest: Mapped[str | None] = mapped_column(ForeignKey("image_blobs.digest"), index=True)
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int]
    height: Mapped[int]
    alt: Mapped[str] = mapped_column(String(200), default="")
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    batch: Mapped[Batch] = relationship(back_populates="images")

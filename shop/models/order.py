"""Purchases: orders, the numbered units they become, and per-customer allotments."""

from __future__ import annotations

import secrets
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop import clock
from shop.extensions import db
from shop.models.types import UTCDateTime

if TYPE_CHECKING:
    from shop.models.catalog import Batch
    from shop.models.user import User

HELD = "held"
PAID = "paid"
EXPIRED = "expired"
CANCELLED = "cancelled"
REFUNDED = "refunded"
STATES = (HELD, PAID, EXPIRED, CANCELLED, REFUNDED)

# Who a hold was given to, and how (``Order.kind``): all three are the same thing in the
# inventory — units held for one customer until a deadline — so every invariant covers them.
CROWD = "crowd"  # bought on the drop page: the customer's own hold
DRAW = "draw"  # a draw's win (``inventory.hold_for``)
WAITLIST = "waitlist"  # a waitlist's offer (``inventory.hold_for``)
KINDS = (CROWD, DRAW, WAITLIST)


def new_public_id() -> str:
    return secrets.token_urlsafe(16)


def new_certificate_code() -> str:
    return secrets.token_urlsafe(12)


class Order(db.Model):
    """One customer's purchase of ``quantity`` units of one batch; price copied at hold time."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("unit_price > 0", name="unit_price_positive"),
        # BIGINT arithmetic: price x quantity may pass 2**31 (the form caps price, not the sum).
        CheckConstraint("amount = CAST(unit_price AS BIGINT) * quantity", name="amount_matches"),
        CheckConstraint("shipping_amount >= 0", name="shipping_not_negative"),
        CheckConstraint(
            "state IN ('held', 'paid', 'expired', 'cancelled', 'refunded')", name="state_known"
        ),
        CheckConstraint("kind IN ('crowd', 'draw', 'waitlist')", name="kind_known"),
        # A customer's orders (My orders), and theirs on a few batches (a drop page's running
        # holds) without reading all the others.
        Index("ix_orders_customer_id_batch_id", "customer_id", "batch_id"),
        # An account's lapsed holds of the last hours (the hold's cooling-off, holds.LAPSED):
        # only expired orders are in it, so it stays small and a hold reads a few entries.
        Index(
            "ix_orders_lapsed",
            "customer_id",
            "released_at",
            sqlite_where=text(f"state = '{EXPIRED}'"),
            postgresql_where=text(f"state = '{EXPIRED}'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    customer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    quantity: Mapped[int]
    unit_price: Mapped[int]
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(16), default=HELD, index=True)
    kind: Mapped[str] = mapped_column(String(16), default=CROWD, server_default=CROWD)
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    checkout_session_id: Mapped[str | None] = mapped_column(Text, unique=True)
    checkout_attempt: Mapped[int] = mapped_column(default=0)
    # A sweeper claims an expired hold for a short lease, then talks to Stripe with no lock held.
    sweep_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    customer_email: Mapped[str | None] = mapped_column(String(254))
    shipping: Mapped[dict | None] = mapped_column(JSON)
    refund_id: Mapped[str | None] = mapped_column(String(255))
    refund_reason: Mapped[str | None] = mapped_column(String(255))
    # Where it goes and what Checkout added, quoted at hold time (shipping) and recorded from
    # the paid session (tax, discount, total); ``amount`` stays the goods alone.
    ship_country: Mapped[str | None] = mapped_column(String(2))
    # The client's network as a keyed hash (``limits.hold_network``), never the address: the
    # hold counts against that network's cap across the drop (``HeldByNetwork``) until it ends.
    client_net: Mapped[str | None] = mapped_column(String(32))
    birth_date: Mapped[date | None]  # confirmed before the hold for an age-restricted batch
    shipping_rate_name: Mapped[str | None] = mapped_column(String(80))
    shipping_amount: Mapped[int] = mapped_column(default=0)
    tax_amount: Mapped[int] = mapped_column(default=0)
    discount_amount: Mapped[int] = mapped_column(default=0)
    amount_total: Mapped[int | None]
    promotion_code: Mapped[str | None] = mapped_column(String(64))
    carrier: Mapped[str | None] = mapped_column(String(80))
    tracking_number: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    customer: Mapped[User] = relationship()
    batch: Mapped[Batch] = relationship()
    units: Mapped[list[Unit]] = relationship(back_populates="order", order_by="Unit.serial")
    unit_refunds: Mapped[list[UnitRefund]] = relationship(
        back_populates="order", order_by="UnitRefund.id"
    )

    @property
    def valid_units(self) -> list[Unit]:
        """The units still the customer's: none once the whole order is refunded."""
        return [unit for unit in self.units if not unit.is_retired]

    @property
    def retired_units(self) -> list[Unit]:
        return [unit for unit in self.units if unit.is_retired]

    def __repr__(self) -> str:
        return f"<Order {self.public_id} {self.state}>"


class Unit(db.Model):
    """One numbered item, created in the transaction that marks its order paid."""

    __tablename__ = "units"
    __table_args__ = (
        UniqueConstraint("batch_id", "serial"),
        CheckConstraint("serial >= 1", name="serial_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    serial: Mapped[int]
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    certificate_code: Mapped[str] = mapped_column(
        String(32), unique=True, default=new_certificate_code
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    # A refunded unit is retired: it keeps its serial (never given to anyone else) and its
    # certificate says so. Set with ``unit_refund_id`` in the refund's claim.
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unit_refund_id: Mapped[int | None] = mapped_column(ForeignKey("unit_refunds.id"), index=True)

    batch: Mapped[Batch] = relationship()
    order: Mapped[Order] = relationship(back_populates="units")

    @property
    def is_retired(self) -> bool:
        return self.refunded_at is not None or self.order.state == REFUNDED


class UnitRefund(db.Model):
    """Some units of a paid order refunded by the maker: the money for them, once, at Stripe.

    The claim (this row and its units' ``unit_refund_id``) is committed before Stripe is asked
    with the key ``refund:units:{id}``; ``refund_id`` is Stripe's refund once it confirmed.
    """

    __tablename__ = "unit_refunds"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    quantity: Mapped[int]
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text)
    refund_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    order: Mapped[Order] = relationship(back_populates="unit_refunds")
    units: Mapped[list[Unit]] = relationship(order_by="Unit.serial")


class Allotment(db.Model):
    """Units of a batch a customer holds or has paid for; the per-customer limit is checked
    against this row atomically, in the same transaction as the stock update."""

    __tablename__ = "allotments"
    __table_args__ = (CheckConstraint("units >= 0", name="units_not_negative"),)

    customer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    units: Mapped[int] = mapped_column(default=0)


class HeldByAccount(db.Model):
    """Units one account holds right now (held, not yet paid) across the batches of one drop.

    Kept in step with the account's held orders — taken by the hold (``holds.take_held_by``),
    given back by release and payment — so the cap per account is checked against this one
    row, atomically, however many batches the account buys at once. ``cap`` is the cap the
    last hold was checked against: the CHECK refuses a hold that two racing holds would carry
    over it."""

    __tablename__ = "held_by_account"
    __table_args__ = (
        CheckConstraint("units >= 0", name="units_not_negative"),
        CheckConstraint("units <= cap", name="units_within_cap"),
    )

    drop_id: Mapped[int] = mapped_column(ForeignKey("drops.id"), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    units: Mapped[int] = mapped_column(default=0)
    cap: Mapped[int]


class HeldByNetwork(db.Model):
    """Units held right now across the batches of one drop from one client network (the keyed
    hash in ``Order.client_net``), by every account on it; as :class:`HeldByAccount`."""

    __tablename__ = "held_by_network"
    __table_args__ = (
        CheckConstraint("units >= 0", name="units_not_negative"),
        CheckConstraint("units <= cap", name="units_within_cap"),
    )

    drop_id: Mapped[int] = mapped_column(ForeignKey("drops.id"), primary_key=True)
    network: Mapped[str] = mapped_column(String(32), primary_key=True)
    units: Mapped[int] = mapped_column(default=0)
    cap: Mapped[int]

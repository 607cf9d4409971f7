"""What the maker console shows about sales: drop summaries, a drop's live numbers, the
dashboard's headline figures — and, for the operator, the paid sessions the shop did not create.
Read-only; numbers come from the database, never from a cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from shop import catalog, drops, money
from shop.extensions import db
from shop.models import Batch, Drop, Order, Product, UnrecognisedPayment, User
from shop.models.drop import CLOSED, DRAFT
from shop.models.order import HELD, PAID, REFUNDED

EXPIRING_SOON = timedelta(minutes=2)


@dataclass
class DropSummary:
    drop: Drop
    phase: str
    sold: int
    held: int
    edition_size: int

    ORDER = {"live": 0, "upcoming": 1, DRAFT: 2, CLOSED: 3}


def drop_summaries(maker: User, now: datetime) -> list[DropSummary]:
    """The maker's drops with their phase and unit counts: live first, then upcoming, drafts,
    and closed ones last."""
    rows = [
        DropSummary(
            drop=drop,
            phase=drop.phase(now),
            sold=sum(b.sold for b in drop.batches),
            held=sum(b.held for b in drop.batches),
            edition_size=sum(b.edition_size for b in drop.batches),
        )
        for drop in drops.drops_of(maker)
    ]
    rows.sort(key=lambda row: DropSummary.ORDER.get(row.phase, 9))
    return rows


@dataclass
class BatchLive:
    batch: Batch
    sold: int
    held: int
    left: int
    edition_size: int
    sold_out_after: timedelta | None

    @property
    def sold_percent(self) -> float:
        return round(100 * self.sold / self.edition_size, 1) if self.edition_size else 0.0

    @property
    def held_percent(self) -> float:
        return round(100 * self.held / self.edition_size, 1) if self.edition_size else 0.0


@dataclass
class LiveStats:
    drop: Drop
    now: datetime
    phase: str
    batches: list[BatchLive]
    revenue: dict[str, int]
    paid_count: int
    paid_orders: list[Order]
    holds: list[Order]
    open_for: timedelta | None
    sold_out_after: timedelta | None

    @property
    def units_sold(self) -> int:
        return sum(b.sold for b in self.batches)

    @property
    def units_held(self) -> int:
        return sum(b.held for b in self.batches)

    @property
    def units_left(self) -> int:
        return sum(b.left for b in self.batches)

    def expiring_soon(self, order: Order) -> bool:
        return order.hold_expires_at is not None and order.hold_expires_at - self.now <= (
            EXPIRING_SOON
        )

    def as_json(self) -> dict:
        return {
            "phase": self.phase,
            "units": {"sold": self.units_sold, "held": self.units_held, "left": self.units_left},
            "revenue": [
                {"currency": c, "amount": a, "formatted": money.format_money(a, c)}
                for c, a in sorted(self.revenue.items())
            ],
            "batches": [
                {
                    "id": b.batch.id,
                    "sold": b.sold,
                    "held": b.held,
                    "left": b.left,
                    "edition_size": b.edition_size,
                }
                for b in self.batches
            ],
            "paid_orders": self.paid_count,
            "holds": len(self.holds),
            "open_seconds": int(self.open_for.total_seconds()) if self.open_for else None,
            "sold_out_seconds": (
                int(self.sold_out_after.total_seconds()) if self.sold_out_after else None
            ),
        }


def live_stats(drop: Drop, now: datetime, *, recent: int = 20) -> LiveStats:
    """Sold / held / left per batch, revenue, holds by expiry and the latest paid orders.

    Numbers come fresh from the database, not from what the session cached earlier.
    """
    db.session.expire_all()
    batches = list(
        db.session.scalars(
            select(Batch)
            .where(Batch.drop_id == drop.id)
            .options(selectinload(Batch.product))
            .order_by(Batch.id)
        )
    )
    ids = [b.id for b in batches]
    revenue = {
        currency: int(total)
        for currency, total in db.session.execute(
            select(Order.currency, func.sum(Order.amount))
            .where(Order.batch_id.in_(ids), Order.state == PAID)
            .group_by(Order.currency)
        )
    }
    paid_count = db.session.scalar(
        select(func.count()).select_from(Order).where(Order.batch_id.in_(ids), Order.state == PAID)
    )
    sold_out_in = catalog.sold_out_times(batches)  # the storefront's rule, not a second one
    opened = drop.opens_at if drop.opens_at is not None and drop.opens_at <= now else None
    rows = [
        BatchLive(
            batch=batch,
            sold=batch.sold,
            held=batch.held,
            left=batch.remaining,
            edition_size=batch.edition_size,
            sold_out_after=sold_out_in.get(batch.id),
        )
        for batch in batches
    ]
    everything_gone = bool(rows) and all(r.sold_out_after is not None for r in rows)
    paid_orders = list(
        db.session.scalars(
            select(Order)
            .where(Order.batch_id.in_(ids), Order.state.in_((PAID, REFUNDED)))
            .options(selectinload(Order.units), selectinload(Order.batch))
            .order_by(Order.paid_at.desc(), Order.id.desc())
            .limit(recent)
        )
    )
    holds = list(
        db.session.scalars(
            select(Order)
            .where(Order.batch_id.in_(ids), Order.state == HELD)
            .options(selectinload(Order.batch))
            .order_by(Order.hold_expires_at, Order.id)
            .limit(recent)
        )
    )
    closed_at = drop.closed_at or (
        drop.closes_at if drop.closes_at is not None and drop.closes_at <= now else None
    )
    return LiveStats(
        drop=drop,
        now=now,
        phase=drop.phase(now),
        batches=rows,
        revenue=revenue,
        paid_count=paid_count or 0,
        paid_orders=paid_orders,
        holds=holds,
        open_for=((closed_at or now) - opened) if opened is not None else None,
        sold_out_after=max(r.sold_out_after for r in rows) if everything_gone else None,  # type: ignore[type-var]
    )


def dashboard_numbers(maker: User) -> dict:
    """Headline numbers for the console's front page."""
    batch_ids = (
        select(Batch.id)
        .join(Product, Batch.product_id == Product.id)
        .where(Product.maker_id == maker.id)
    )
    revenue = dict(
        db.session.execute(
            select(Order.currency, func.sum(Order.amount))
            .where(Order.batch_id.in_(batch_ids), Order.state == PAID)
            .group_by(Order.currency)
        ).all()
    )
    to_ship = db.session.scalar(
        select(func.count())
        .select_from(Order)
        .where(Order.batch_id.in_(batch_ids), Order.state == PAID, Order.shipped_at.is_(None))
    )
    return {"revenue": {c: int(a) for c, a in revenue.items()}, "to_ship": to_ship or 0}


def unrecognised_payments(*, limit: int = 100) -> list[UnrecognisedPayment]:
    """Paid sessions the shop did not create, newest first (what the operator reviews)."""
    return list(
        db.session.scalars(
            select(UnrecognisedPayment)
            .order_by(UnrecognisedPayment.recorded_at.desc())
            .limit(limit)
        )
    )

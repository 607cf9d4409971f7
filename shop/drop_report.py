"""The report after a drop: what happened, per batch and for the whole drop, read from the orders.

- **Holds**: every order is a hold. Its outcome is *paid* (it has ``paid_at``; a refund later
  keeps it paid here), *expired* (its time ran out), *released* (cancelled: the customer gave
  up or Stripe refused the session), *late, refunded* (paid after its hold had ended and
  refunded instead of fulfilled) or still *held*. Conversion is paid ÷ taken.
- **Refused attempts** by reason: ``refusal_counts.totals`` (counted without a write per
  refusal). The shop has no waiting room, so there is no queue reason.
- **Buyers**: a buyer of the drop is *returning* when they had paid for an order of another of
  the maker's drops before their first payment in this one, else *first-time*.
- **Money** by currency: *taken* is what customers paid for paid orders (Stripe's total:
  goods, shipping and tax, less discounts); *refunded* is every unit refund plus, for an order
  refunded in full, what was left of it; *net* is the difference. Late payments refunded at
  once are in neither.
- **Countries**: where the paid, not fully refunded orders go (the shipping address Stripe
  collected, else the country chosen before Checkout).
- **Time to sell out**: ``catalog.sold_out_times``, the one rule the storefront uses too.
- **Units per minute**: units taken (holds) and paid, in buckets of one minute or more so a
  long drop still fits 60 bars, from the opening to the last hold or payment.

Read-only; figures come from the database as it is now.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from shop import catalog, refusal_counts, shipping_rates
from shop.extensions import db
from shop.models import Batch, Drop, Order, Product, UnitRefund
from shop.models.order import CANCELLED, EXPIRED, HELD, REFUNDED

BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)  # minutes
MAX_BARS = 60
OUTCOMES = ("paid", "expired", "released", "late_refunded", "held")

# What a person reads for each reason, grouped as the maker thinks of them.
REASON_GROUPS = (
    ("Sold out", ("sold_out",)),
    ("Limit reached", ("limit_reached", "drop_cap_reached", "network_cap_reached", "cooling_off")),
    ("Not live", ("drop_not_live",)),
    ("Age or shipping", ("age_restricted", "cannot_ship_there")),
    ("Other", ("email_not_verified", "invalid_quantity", "too_many_requests")),
)
REASON_LABELS = {
    "sold_out": "sold out",
    "limit_reached": "over the per-customer limit",
    "drop_cap_reached": "over the cap per account across the drop",
    "network_cap_reached": "over the cap per network across the drop",
    "cooling_off": "cooling off after lapsed holds",
    "drop_not_live": "not open yet, or closed",
    "age_restricted": "under the minimum age",
    "cannot_ship_there": "cannot ship there",
    "email_not_verified": "email address not confirmed",
    "invalid_quantity": "no valid quantity",
    "too_many_requests": "too many requests",
}


@dataclass
class Figures:
    """One batch's figures, or the drop's (the sum of its batches')."""

    holds: int = 0
    units_held: int = 0  # units taken by those holds
    outcomes: Counter[str] = field(default_factory=Counter)  # orders by OUTCOMES
    units_paid: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # attempts by reason code
    first_time: int = 0
    returning: int = 0
    taken: Counter[str] = field(default_factory=Counter)  # currency -> minor units
    refunded: Counter[str] = field(default_factory=Counter)
    units_refunded: int = 0
    countries: Counter[str] = field(default_factory=Counter)  # country code ("" unknown) -> orders

    @property
    def conversion(self) -> float | None:
        """Paid holds ÷ holds taken, in percent; None before any hold."""
        return round(100 * self.outcomes["paid"] / self.holds, 1) if self.holds else None

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    def refused_in(self, codes: tuple[str, ...]) -> int:
        return sum(self.refused[code] for code in codes)

    @property
    def net(self) -> dict[str, int]:
        return {c: self.taken[c] - self.refunded[c] for c in sorted(self.taken | self.refunded)}

    def add(self, other: Figures) -> None:
        for name in ("holds", "units_held", "units_paid", "first_time", "returning"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.units_refunded += other.units_refunded
        for name in ("outcomes", "refused", "taken", "refunded", "countries"):
            getattr(self, name).update(getattr(other, name))


@dataclass
class BatchReport:
    batch: Batch
    figures: Figures
    sold_out_after: timedelta | None


@dataclass
class Minute:
    """One bar of the chart: units taken (held) and paid from ``start`` for the bucket."""

    start: datetime
    taken: int
    paid: int


@dataclass
class DropReport:
    drop: Drop
    now: datetime
    batches: list[BatchReport]
    total: Figures
    sold_out_after: timedelta | None  # when every batch sold out: the last one's time
    minutes: list[Minute]
    bucket_minutes: int

    @property
    def busiest(self) -> Minute | None:
        return max(self.minutes, key=lambda m: m.taken, default=None)

    def _per_scope(self, count) -> dict:
        return {**{r.batch.id: count(r.figures) for r in self.batches}, "all": count(self.total)}

    def refused_by_group(self) -> list[tuple[str, dict]]:
        """(group, {batch id or "all": attempts}) for each group of reasons."""
        return [
            (name, self._per_scope(lambda f, codes=codes: f.refused_in(codes)))
            for name, codes in REASON_GROUPS
        ]

    def refused_in_words(self) -> list[str]:
        """What makes up each group that counted more than one kind of refusal."""
        lines = []
        for name, codes in REASON_GROUPS:
            found = [(code, self.total.refused[code]) for code in codes if self.total.refused[code]]
            if len(codes) > 1 and found:
                lines.append(f"{name}: " + ", ".join(f"{n} {REASON_LABELS[c]}" for c, n in found))
        return lines

    def orders_by_country(self) -> list[tuple[str, dict]]:
        """(country name, {batch id or "all": paid orders going there}), most orders first."""
        codes = sorted(self.total.countries, key=lambda c: (-self.total.countries[c], c))
        return [
            (
                shipping_rates.country_name(code) if code else "Unknown",
                self._per_scope(lambda f, code=code: f.countries[code]),
            )
            for code in codes
        ]


def outcome(order: Order) -> str:
    """The one outcome a hold is counted under (see the module's docstring)."""
    if order.paid_at is not None:
        return "paid"
    if order.state == HELD:
        return "held"
    if order.state == EXPIRED:
        return "expired"
    if order.state == CANCELLED:
        return "released"
    if order.state == REFUNDED:
        return "late_refunded"
    raise ValueError(f"an unpaid order in state {order.state!r}")


def charged(order: Order) -> int:
    """What the customer paid for the order: Stripe's total when recorded."""
    if order.amount_total is not None:
        return order.amount_total
    return (
        order.amount
        + (order.shipping_amount or 0)
        + (order.tax_amount or 0)
        - (order.discount_amount or 0)
    )


def destination(order: Order) -> str:
    """The country an order ships to: the address Stripe collected, else the one chosen."""
    address = order.shipping.get("address") if isinstance(order.shipping, dict) else None
    country = address.get("country") if isinstance(address, dict) else None
    return str(country or order.ship_country or "").upper()[:2]


def drop_report(drop: Drop, now: datetime) -> DropReport:
    db.session.expire_all()  # numbers as the database has them, not as this session cached
    batches = list(
        db.session.scalars(
            select(Batch)
            .where(Batch.drop_id == drop.id)
            .options(selectinload(Batch.product), selectinload(Batch.drop))
            .order_by(Batch.id)
        )
    )
    ids = [batch.id for batch in batches]
    orders = list(
        db.session.scalars(
            select(Order).where(Order.batch_id.in_(ids)).order_by(Order.created_at, Order.id)
        )
    )
    unit_refunds = _unit_refunds([o.id for o in orders if o.paid_at is not None])
    returning = _returning_buyers(drop, orders)
    refused = refusal_counts.totals(ids)
    per_batch = {batch.id: Figures(refused=refused[batch.id]) for batch in batches}
    buyers: dict[int, set[int]] = {batch.id: set() for batch in batches}
    for order in orders:
        figures = per_batch[order.batch_id]
        figures.holds += 1
        figures.units_held += order.quantity
        figures.outcomes[outcome(order)] += 1
        if order.paid_at is None:
            continue
        figures.units_paid += order.quantity
        buyers[order.batch_id].add(order.customer_id)
        by_units = unit_refunds.get(order.id, (0, 0))
        figures.taken[order.currency] += charged(order)
        figures.refunded[order.currency] += (
            charged(order) if order.state == REFUNDED else by_units[1]
        )
        figures.units_refunded += order.quantity if order.state == REFUNDED else by_units[0]
        if order.state != REFUNDED:
            figures.countries[destination(order)] += 1
    for batch_id, customers in buyers.items():
        per_batch[batch_id].returning = len(customers & returning)
        per_batch[batch_id].first_time = len(customers - returning)
    total = Figures()
    for figures in per_batch.values():
        total.add(figures)
    drop_buyers = set().union(*buyers.values()) if buyers else set()
    total.returning, total.first_time = (
        len(drop_buyers & returning),
        len(drop_buyers - returning),
    )
    sold_out_in = catalog.sold_out_times(batches)  # the storefront's rule, not a second one
    rows = [BatchReport(b, per_batch[b.id], sold_out_in.get(b.id)) for b in batches]
    everything_gone = bool(rows) and all(r.sold_out_after is not None for r in rows)
    minutes, bucket = _per_minute(drop, orders, now)
    return DropReport(
        drop=drop,
        now=now,
        batches=rows,
        total=total,
        sold_out_after=max(r.sold_out_after for r in rows) if everything_gone else None,  # type: ignore[type-var]
        minutes=minutes,
        bucket_minutes=bucket,
    )


def _unit_refunds(order_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Per paid order: units refunded one by one and their amount (whole refunds aside)."""
    if not order_ids:
        return {}
    return {
        order_id: (int(units), int(amount))
        for order_id, units, amount in db.session.execute(
            select(UnitRefund.order_id, func.sum(UnitRefund.quantity), func.sum(UnitRefund.amount))
            .where(UnitRefund.order_id.in_(order_ids))
            .group_by(UnitRefund.order_id)
        )
    }


def _returning_buyers(drop: Drop, orders: list[Order]) -> set[int]:
    """The drop's buyers who had paid for an order of another of the maker's drops (or a batch
    in none) before their first payment in this drop."""
    first_paid: dict[int, datetime] = {}
    for order in orders:
        if order.paid_at is not None:
            seen = first_paid.get(order.customer_id)
            first_paid[order.customer_id] = min(seen, order.paid_at) if seen else order.paid_at
    if not first_paid:
        return set()
    earlier = db.session.execute(
        select(Order.customer_id, func.min(Order.paid_at))
        .join(Batch, Order.batch_id == Batch.id)
        .join(Product, Batch.product_id == Product.id)
        .where(
            Product.maker_id == drop.maker_id,
            or_(Batch.drop_id != drop.id, Batch.drop_id.is_(None)),
            Order.paid_at.is_not(None),
            Order.customer_id.in_(first_paid),
        )
        .group_by(Order.customer_id)
    )
    return {customer for customer, paid in earlier if paid < first_paid[customer]}


def _per_minute(drop: Drop, orders: list[Order], now: datetime) -> tuple[list[Minute], int]:
    if not orders:
        return [], 1
    moments = [o.created_at for o in orders] + [o.paid_at for o in orders if o.paid_at]
    start = drop.opens_at if drop.opens_at is not None and drop.opens_at <= now else None
    start = min([start or moments[0], *moments]).replace(second=0, microsecond=0)
    span = (max(moments) - start).total_seconds() / 60
    bucket = next((b for b in BUCKETS if span / b < MAX_BARS), BUCKETS[-1])
    count = int(span // bucket) + 1
    taken, paid = [0] * count, [0] * count
    for order in orders:
        taken[_slot(order.created_at, start, bucket, count)] += order.quantity
        if order.paid_at is not None:
            paid[_slot(order.paid_at, start, bucket, count)] += order.quantity
    return [
        Minute(start + timedelta(minutes=i * bucket), taken[i], paid[i]) for i in range(count)
    ], bucket


def _slot(moment: datetime, start: datetime, bucket: int, count: int) -> int:
    return min(count - 1, max(0, int((moment - start).total_seconds() // 60) // bucket))

"""The maker's orders as CSV: serials included, every cell safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime

from shop import drop_report, money, refusal_counts, sales, shipping
from shop.extensions import db
from shop.models import Order, User

CSV_COLUMNS = [
    "order",
    "created (UTC)",
    "paid (UTC)",
    "state",
    "drop",
    "product",
    "batch",
    "quantity",
    "serials",
    "unit price",
    "amount",
    "currency",
    "customer email",
    "ship to",
    "address",
    "carrier",
    "tracking number",
    "shipped (UTC)",
    "refunded (UTC)",
    "payment reference",
]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> str:
    """A cell a spreadsheet shows as text: anything that could start a formula gets a ``'``."""
    cell = "" if value is None else str(value)
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def csv_rows(orders: Iterable[Order]) -> Iterator[list[str]]:
    yield CSV_COLUMNS
    for order in orders:
        address = order.shipping if isinstance(order.shipping, dict) else {}
        lines = shipping.shipping_lines(address)
        row = [
            order.public_id,
            _utc(order.created_at),
            _utc(order.paid_at),
            order.state,
            order.batch.drop.title if order.batch.drop else "",
            order.batch.product.name,
            order.batch.number,
            order.quantity,
            " ".join(str(u.serial) for u in order.units),
            money.decimal_amount(order.unit_price, order.currency),
            money.decimal_amount(order.amount, order.currency),
            order.currency.upper(),
            order.customer_email or order.customer.email,
            lines[0] if lines else "",
            ", ".join(lines[1:]),
            order.carrier or "",
            order.tracking_number or "",
            _utc(order.shipped_at),
            _utc(order.refunded_at),
            order.payment_intent_id or "",
        ]
        yield [spreadsheet_safe(cell) for cell in row]


def orders_csv(maker: User, filters: sales.OrderFilter) -> str:
    """Every order matching ``filters`` as CSV text (serials included, formula-safe)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(csv_rows(db.session.scalars(sales.orders_query(maker, filters))))
    return out.getvalue()


# --- the report after a drop ---------------------------------------------------------------

REPORT_COLUMNS = ["section", "batch", "measure", "currency", "value"]


def _report_rows(report: drop_report.DropReport) -> Iterator[list[object]]:
    drop = report.drop
    yield ["drop", "", "title", "", drop.title]
    yield ["drop", "", "opened (UTC)", "", _utc(drop.opens_at)]
    yield ["drop", "", "closed (UTC)", "", _utc(drop.closed_at)]
    scopes = [(r.batch.title, r.figures, r.sold_out_after) for r in report.batches]
    scopes.append(("all batches", report.total, report.sold_out_after))
    for name, figures, sold_out_after in scopes:
        seconds = int(sold_out_after.total_seconds()) if sold_out_after is not None else ""
        yield ["sold out", name, "seconds after opening", "", seconds]
        yield ["holds", name, "taken", "", figures.holds]
        yield ["holds", name, "units taken", "", figures.units_held]
        for outcome in drop_report.OUTCOMES:
            yield ["holds", name, outcome, "", figures.outcomes[outcome]]
        yield ["holds", name, "units paid", "", figures.units_paid]
        conversion = figures.conversion
        yield ["holds", name, "conversion (%)", "", "" if conversion is None else conversion]
        for reason in refusal_counts.REASONS:
            yield ["refused", name, reason, "", figures.refused[reason]]
        yield ["buyers", name, "first-time", "", figures.first_time]
        yield ["buyers", name, "returning", "", figures.returning]
        for currency, net in figures.net.items():
            for measure, amount in (
                ("taken", figures.taken[currency]),
                ("refunded", figures.refunded[currency]),
                ("net", net),
            ):
                yield ["money", name, measure, currency.upper(), _decimal(amount, currency)]
        yield ["money", name, "units refunded", "", figures.units_refunded]
        for country, orders in sorted(figures.countries.items()):
            yield ["countries", name, country or "unknown", "", orders]
    every = f"per {report.bucket_minutes} min"
    for minute in report.minutes:
        at = _utc(minute.start)[:16] + " UTC"
        yield [f"units taken {every}", "all batches", at, "", minute.taken]
        yield [f"units paid {every}", "all batches", at, "", minute.paid]


def _decimal(amount: int, currency: str) -> str:
    return ("-" if amount < 0 else "") + money.decimal_amount(abs(amount), currency)


def report_csv(report: drop_report.DropReport) -> str:
    """The report after a drop as CSV, one figure per line, every cell spreadsheet-safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    writer.writerows([spreadsheet_safe(cell) for cell in row] for row in _report_rows(report))
    return out.getvalue()

"""The maker's orders as CSV: serials included, every cell safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime

from shop import money, sales, shipping
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

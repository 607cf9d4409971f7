"""Shipping a paid order: carrier and tracking, and the address as lines."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, literal, update

from shop import audit, messages
from shop.errors import InvalidInput, InvalidState
from shop.extensions import db
from shop.models import Order, User
from shop.models.order import PAID, REFUNDED
from shop.models.types import UTCDateTime


def mark_shipped(
    order: Order, *, carrier: str, tracking_number: str, actor: User, now: datetime
) -> bool:
    """Record carrier and tracking on a paid order; a second submit corrects them.

    Returns True the first time the order is marked shipped. Refunded or unpaid orders are
    refused by the UPDATE itself, so a refund landing at the same moment wins cleanly.
    """
    carrier = (carrier or "").strip()[:80]
    tracking_number = (tracking_number or "").strip()[:120]
    if not carrier:
        raise InvalidInput("Say which carrier is delivering it.")
    first_time = order.shipped_at is None
    changed = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.state == PAID)
        .values(
            carrier=carrier,
            tracking_number=tracking_number or None,
            shipped_at=func.coalesce(Order.shipped_at, literal(now, UTCDateTime())),
        )
    ).rowcount
    db.session.expire(order)
    if changed != 1:
        if order.state == REFUNDED:
            raise InvalidState("This order was refunded, so there is nothing to ship.")
        raise InvalidState("Only paid orders can be marked shipped.")
    audit.record(
        "order.shipped" if first_time else "order.tracking_updated",
        actor=actor,
        batch=order.batch,
        order=order,
        detail=f"{carrier} {tracking_number}".strip(),
    )
    if first_time:
        messages.order_shipped(order)  # a correction of the tracking sends nothing more
    db.session.flush()
    return first_time


def shipping_lines(shipping: dict | None) -> list[str]:
    """A Stripe shipping_details dict (``{name, address{…}}``) as address lines."""
    if not isinstance(shipping, dict):
        return []
    address = shipping.get("address") if isinstance(shipping.get("address"), dict) else shipping
    lines = [shipping.get("name")]
    lines += [address.get("line1"), address.get("line2")]
    city = " ".join(str(part) for part in (address.get("postal_code"), address.get("city")) if part)
    lines += [city, address.get("state"), address.get("country")]
    return [str(line) for line in lines if line]

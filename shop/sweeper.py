"""The sweeper: expired holds are released once Stripe confirms their session can't be paid.

Safe to run in several processes (``flask shop worker``, the dev server's thread): leases split
the work and every state change is a compare-and-set, so no hold is released twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from shop import database, inventory, orders, payments, refunds
from shop.errors import ShopError
from shop.extensions import db
from shop.models import Order
from shop.models.order import EXPIRED, HELD

log = logging.getLogger(__name__)

SWEEP_LEASE = timedelta(seconds=60)


def claim_expired_holds(now: datetime, *, limit: int = 100) -> list[int]:
    """Lease up to ``limit`` expired holds to this sweeper and commit the lease.

    On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets several sweepers split the work; a lease that
    runs out (a sweeper died) makes the hold claimable again.
    """
    candidates = (
        select(Order.id)
        .where(Order.state == HELD, Order.hold_expires_at <= now)
        .where((Order.sweep_lease_until.is_(None)) | (Order.sweep_lease_until <= now))
        .order_by(Order.hold_expires_at)
        .limit(limit)
    )
    return database.lease(candidates, Order.sweep_lease_until, until=now + SWEEP_LEASE)


def sweep(now: datetime) -> dict[str, int]:
    """One pass over expired holds: release each one Stripe confirms can no longer be paid,
    fulfil the ones it reports paid, keep the rest for the next pass; then retry interrupted
    refunds. Safe to run in several processes: leases split the work and every state change is
    a compare-and-set, so no hold is released twice."""
    counts = {"released": 0, "fulfilled": 0, "kept": 0, "refunds_retried": 0}
    for order_id in claim_expired_holds(now):
        try:
            counts[_sweep_one(order_id, now=now)] += 1
        except ShopError as error:  # Stripe trouble mid-fulfil: keep it for the next pass
            db.session.rollback()
            log.warning("sweeping order %s failed: %s", order_id, error.message)
            counts["kept"] += 1
    counts["refunds_retried"] = refunds.retry_refunds(now) + refunds.retry_unit_refunds(now)
    return counts


def _sweep_one(order_id: int, *, now: datetime) -> str:
    order = db.session.get(Order, order_id, populate_existing=True)
    if order is None or order.state != HELD:
        db.session.rollback()
        return "kept"
    session_id = order.checkout_session_id
    db.session.rollback()  # no transaction is open while Stripe is asked
    outcome = payments.settle_abandoned(session_id) if session_id else payments.UNPAYABLE
    if outcome == payments.COMPLETE:
        assert session_id is not None
        result = orders.fulfil(session_id, now=now)
        return (
            "fulfilled"
            if result in (orders.FULFILLED, orders.ALREADY_PAID, orders.REFUNDED_NOW)
            else "kept"
        )
    if outcome == payments.UNPAYABLE:
        order = db.session.get(Order, order_id, populate_existing=True)
        released = order is not None and inventory.release(order, EXPIRED, now=now)
        db.session.commit()
        return "released" if released else "kept"
    db.session.rollback()
    return "kept"

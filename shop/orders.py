"""Order lifecycle around payments: sweeping expired holds, fulfilling, cancelling, refunding.

Stripe is reached only through ``shop.payments``; stock changes only through
``shop.inventory``. No database transaction is open while Stripe is being asked.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update

from shop import inventory
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
    if db.session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    ids = list(db.session.scalars(candidates))
    if ids:
        db.session.execute(
            update(Order)
            .where(Order.id.in_(ids), Order.state == HELD)
            .values(sweep_lease_until=now + SWEEP_LEASE)
        )
    db.session.commit()
    return ids


def sweep(now: datetime) -> dict[str, int]:
    """One pass over expired holds: release each one Stripe confirms can no longer be paid."""
    from shop import payments

    counts = {"released": 0, "fulfilled": 0, "kept": 0}
    for order_id in claim_expired_holds(now):
        order = db.session.get(Order, order_id)
        if order is None or order.state != HELD:
            db.session.rollback()
            continue
        session_id = order.checkout_session_id
        db.session.rollback()  # no transaction is open while Stripe is asked
        outcome = payments.settle_abandoned(session_id) if session_id else "unpayable"
        if outcome == "complete":
            assert session_id is not None
            fulfil_session(session_id, now=now)
            counts["fulfilled"] += 1
        elif outcome == "unpayable":
            order = db.session.get(Order, order_id)
            if order is not None and inventory.release(order, EXPIRED, now=now):
                counts["released"] += 1
            db.session.commit()
        else:
            counts["kept"] += 1
            db.session.rollback()
    return counts


def fulfil_session(session_id: str, *, now: datetime) -> str:
    """Filled in by the Stripe integration: paid session → paid order."""
    from shop import payments

    return payments.fulfil(session_id, now=now)

"""The audit trail: who opened, closed, edited or refunded what, and when."""

from __future__ import annotations

from shop import clock
from shop.extensions import db
from shop.models import AuditEntry, Batch, Drop, Order, User


def record(
    action: str,
    *,
    actor: User | None,
    drop: Drop | None = None,
    batch: Batch | None = None,
    order: Order | None = None,
    detail: str = "",
) -> AuditEntry:
    if drop is None and batch is not None:
        drop = batch.drop
    entry = AuditEntry(
        action=action,
        actor_id=actor.id if actor is not None else None,
        drop_id=drop.id if drop is not None else None,
        batch_id=batch.id if batch is not None else None,
        order_id=order.id if order is not None else None,
        detail=detail[:2000],
        created_at=clock.now(),
    )
    db.session.add(entry)
    return entry

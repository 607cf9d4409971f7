"""The audit trail: who opened, closed, edited or refunded what, and when."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

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


def drop_trail(drop: Drop, *, limit: int = 200) -> list[AuditEntry]:
    """Everything recorded about the drop, its batches and their orders, newest first."""
    batch_ids = select(Batch.id).where(Batch.drop_id == drop.id)
    order_ids = select(Order.id).where(Order.batch_id.in_(batch_ids))
    return list(
        db.session.scalars(
            select(AuditEntry)
            .where(
                or_(
                    AuditEntry.drop_id == drop.id,
                    AuditEntry.batch_id.in_(batch_ids),
                    AuditEntry.order_id.in_(order_ids),
                )
            )
            .options(selectinload(AuditEntry.actor))
            .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
            .limit(limit)
        )
    )


def order_trail(order: Order) -> list[AuditEntry]:
    return list(
        db.session.scalars(
            select(AuditEntry)
            .where(AuditEntry.order_id == order.id)
            .options(selectinload(AuditEntry.actor))
            .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
        )
    )

"""The audit trail: everything done in a maker's shop — by the maker in the console, by a
``flask shop …`` command (actor ``cli``) or by the shop itself — and when.

``actor`` is the signed-in person (a :class:`User`), :data:`CLI` or :data:`SYSTEM`; ``None``
is the shop itself too. Every entry names whose shop it is about (``maker_id``), taken from the
drop, batch, product or order it concerns, or given as ``maker`` (settings, shipping rates).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from shop import clock
from shop.extensions import db
from shop.models import AuditEntry, Batch, Drop, Order, Product, User
from shop.models.audit import CLI, PERSON, SYSTEM

__all__ = ["CLI", "SYSTEM", "Actor", "drop_trail", "maker_trail", "order_trail", "record"]

Actor = User | Literal["cli", "system"] | None


def record(
    action: str,
    *,
    actor: Actor,
    maker: User | None = None,
    product: Product | None = None,
    drop: Drop | None = None,
    batch: Batch | None = None,
    order: Order | None = None,
    detail: str = "",
) -> AuditEntry:
    if drop is None and batch is not None:
        drop = batch.drop
    if product is None and batch is not None:
        product = batch.product
    maker_id = (
        maker.id
        if maker is not None
        else drop.maker_id
        if drop is not None
        else product.maker_id
        if product is not None
        else None
    )
    person = actor if isinstance(actor, User) else None
    entry = AuditEntry(
        action=action,
        actor_id=person.id if person is not None else None,
        actor_kind=PERSON if person is not None else (actor or SYSTEM),
        maker_id=maker_id,
        product_id=product.id if product is not None else None,
        drop_id=drop.id if drop is not None else None,
        batch_id=batch.id if batch is not None else None,
        order_id=order.id if order is not None else None,
        detail=detail[:2000],
        created_at=clock.now(),
    )
    db.session.add(entry)
    return entry


def _newest_first(query, limit: int | None, *, by_time: bool = True) -> list[AuditEntry]:
    order = (
        (AuditEntry.created_at.desc(), AuditEntry.id.desc()) if by_time else (AuditEntry.id.desc(),)
    )
    query = query.options(selectinload(AuditEntry.actor)).order_by(*order)
    return list(db.session.scalars(query.limit(limit) if limit else query))


def drop_trail(drop: Drop, *, limit: int = 200) -> list[AuditEntry]:
    """Everything recorded about the drop, its batches and their orders, newest first."""
    batch_ids = select(Batch.id).where(Batch.drop_id == drop.id)
    order_ids = select(Order.id).where(Order.batch_id.in_(batch_ids))
    return _newest_first(
        select(AuditEntry).where(
            or_(
                AuditEntry.drop_id == drop.id,
                AuditEntry.batch_id.in_(batch_ids),
                AuditEntry.order_id.in_(order_ids),
            )
        ),
        limit,
    )


def maker_trail(maker: User, *, before: int | None = None, limit: int = 100) -> list[AuditEntry]:
    """Everything recorded about the maker's shop, newest first; ``before`` an entry id pages
    back through older ones."""
    query = (
        select(AuditEntry)
        .where(AuditEntry.maker_id == maker.id)
        .options(
            selectinload(AuditEntry.product),
            selectinload(AuditEntry.drop),
            selectinload(AuditEntry.batch).selectinload(Batch.product),
            selectinload(AuditEntry.order),
        )
    )
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return _newest_first(query, limit, by_time=False)


def order_trail(order: Order) -> list[AuditEntry]:
    return _newest_first(select(AuditEntry).where(AuditEntry.order_id == order.id), None)

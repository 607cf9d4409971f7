"""A maker's sales: their orders found, filtered and paged (held orders included).

Every lookup is scoped to the maker: someone else's order is ``NotFound``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import selectinload

from shop import database
from shop.extensions import db
from shop.models import Batch, Order, Product, User
from shop.models.order import PAID, REFUNDED


def order_for(maker: User, public_id: str) -> Order:
    return database.one_or_not_found(
        select(Order)
        .join(Batch, Order.batch_id == Batch.id)
        .join(Product, Batch.product_id == Product.id)
        .where(Order.public_id == public_id, Product.maker_id == maker.id)
    )


@dataclass
class OrderFilter:
    drop_id: int | None = None
    batch_id: int | None = None
    state: str | None = None
    email: str = ""
    to_ship: bool = False


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def orders_query(maker: User, filters: OrderFilter) -> Select:
    """The maker's orders matching ``filters``, newest first (held orders included)."""
    query = (
        select(Order)
        .join(Batch, Order.batch_id == Batch.id)
        .join(Product, Batch.product_id == Product.id)
        .join(User, Order.customer_id == User.id)
        .where(Product.maker_id == maker.id)
    )
    if filters.drop_id is not None:
        query = query.where(Batch.drop_id == filters.drop_id)
    if filters.batch_id is not None:
        query = query.where(Order.batch_id == filters.batch_id)
    if filters.state:
        query = query.where(Order.state == filters.state)
    if filters.to_ship:
        query = query.where(Order.state == PAID, Order.shipped_at.is_(None))
    email = (filters.email or "").strip().lower()
    if email:
        pattern = f"%{_like_escape(email)}%"
        query = query.where(
            or_(
                func.lower(Order.customer_email).like(pattern, escape="\\"),
                User.email.like(pattern, escape="\\"),
            )
        )
    return query.options(
        selectinload(Order.units),
        selectinload(Order.customer),
        selectinload(Order.batch).selectinload(Batch.product),
        selectinload(Order.batch).selectinload(Batch.drop),
    ).order_by(Order.created_at.desc(), Order.id.desc())


def list_orders(maker: User, filters: OrderFilter, *, page: int = 1, per_page: int = 50):
    """One page of orders and whether there is another."""
    page = max(1, page)
    rows = list(
        db.session.scalars(
            orders_query(maker, filters).limit(per_page + 1).offset((page - 1) * per_page)
        )
    )
    return rows[:per_page], len(rows) > per_page


def recent_orders(maker: User, *, limit: int = 8) -> list[Order]:
    query = orders_query(maker, OrderFilter()).where(Order.state.in_((PAID, REFUNDED)))
    return list(db.session.scalars(query.limit(limit)))

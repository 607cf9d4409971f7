"""Read-side queries for the storefront: drops by phase, batches with what is left."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from shop.extensions import db
from shop.models import Batch, Drop, Product
from shop.models.drop import CLOSED, DRAFT


@dataclass
class HomeListing:
    live: list[Drop] = field(default_factory=list)
    upcoming: list[Drop] = field(default_factory=list)
    past: list[Drop] = field(default_factory=list)


def home_listing(now: datetime) -> HomeListing:
    """Public drops split into live, upcoming and past, each in the order a visitor wants."""
    drops = db.session.scalars(
        select(Drop)
        .where(Drop.state != DRAFT)
        .options(
            selectinload(Drop.batches).selectinload(Batch.product).selectinload(Product.maker),
            selectinload(Drop.batches).selectinload(Batch.images),
        )
    ).all()
    listing = HomeListing()
    for drop in drops:
        phase = drop.phase(now)
        getattr(listing, "past" if phase == CLOSED else phase).append(drop)
    listing.live.sort(key=lambda d: (d.closes_at is None, d.closes_at or now))
    listing.upcoming.sort(key=lambda d: d.opens_at or now)
    listing.past.sort(key=lambda d: d.closed_at or d.closes_at or d.created_at, reverse=True)
    return listing


def public_drop(slug: str) -> Drop | None:
    return db.session.scalar(
        select(Drop)
        .where(Drop.slug == slug, Drop.state != DRAFT)
        .options(selectinload(Drop.batches).selectinload(Batch.product))
    )


def batch_by_number(product_slug: str, number: int) -> Batch | None:
    """A batch that has been released (its drop is not a draft)."""
    return db.session.scalar(
        select(Batch)
        .join(Product)
        .outerjoin(Drop, Batch.drop_id == Drop.id)
        .where(Product.slug == product_slug, Batch.number == number)
        .where(or_(Drop.id.is_(None), Drop.state != DRAFT))
    )

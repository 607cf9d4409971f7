"""Seed data for races and benchmarks, through the factories and services; each helper commits
and returns plain ids, so a test can use them after the app context is gone."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import insert

from shop import clock, passwords
from shop.extensions import db
from shop.models import Drop, User
from shop.models.drop import OPEN
from testkit import factories

PASSWORD = factories.PASSWORD


@dataclass(frozen=True)
class LiveDrop:
    maker_id: int
    drop_id: int
    slug: str
    batch_ids: list[int]

    @property
    def batch_id(self) -> int:
        return self.batch_ids[0]


@dataclass(frozen=True)
class Customer:
    id: int
    email: str
    password: str = PASSWORD


def seed_live_drop(
    app: Flask,
    *,
    edition_size: int = 10,
    limit: int = 2,
    price: int = 2500,
    batches: int = 1,
    now: datetime | None = None,
) -> LiveDrop:
    """A maker with an open drop that is live now (real clock) and ``batches`` batches."""
    now = now or clock.now()
    with app.app_context():
        maker = factories.make_maker()
        drop = factories.make_drop(
            maker, state=OPEN, opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=2)
        )
        batch_ids = [
            factories.make_batch(
                factories.make_product(maker),
                drop,
                edition_size=edition_size,
                limit=limit,
                price=price,
            ).id
            for _ in range(batches)
        ]
        seeded = LiveDrop(maker.id, drop.id, drop.slug, batch_ids)
        db.session.commit()
        db.session.remove()
    return seeded


def add_batch(
    app: Flask, drop: LiveDrop, *, edition_size: int = 10, limit: int = 2, price: int = 2500
) -> int:
    """One more batch in ``drop`` (a fresh race on the same server); returns its id."""
    with app.app_context():
        maker = db.session.get(User, drop.maker_id)
        product = factories.make_product(maker)
        batch = factories.make_batch(
            product,
            db.session.get(Drop, drop.drop_id),
            edition_size=edition_size,
            limit=limit,
            price=price,
        )
        batch_id = batch.id
        db.session.commit()
        db.session.remove()
    return batch_id


def create_customers(app: Flask, count: int, *, password: str = PASSWORD) -> list[Customer]:
    """``count`` customer accounts inserted in one statement (one password hash shared)."""
    tag = secrets.token_hex(3)
    emails = [f"buyer-{tag}-{n}@example.com" for n in range(count)]
    with app.app_context():
        password_hash = passwords.hash_password(password)
        rows = [
            {
                "email": email,
                "password_hash": password_hash,
                "display_name": f"Buyer {n}",
                "role": "customer",
                "is_admin": False,
                "timezone": "UTC",
                "session_token": secrets.token_urlsafe(16),
                "created_at": clock.now(),
            }
            for n, email in enumerate(emails)
        ]
        created = db.session.execute(
            insert(User).returning(User.id, User.email, sort_by_parameter_order=True), rows
        ).all()
        db.session.commit()
        db.session.remove()
    return [Customer(row.id, row.email, password) for row in created]

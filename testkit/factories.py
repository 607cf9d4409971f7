"""Small factory functions for test data. They add and flush; the test decides on commits."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from shop import clock, draws, passwords
from shop.extensions import db
from shop.models import Batch, Drop, Product, User
from shop.models.drop import DRAW, OPEN
from shop.models.user import CUSTOMER, MAKER

# A frozen clock: the drop window is [OPENS_AT, CLOSES_AT); AT_DROP is inside it. It lies a few
# days after the day the suite runs, so a page rendered at the real time sees these drops as
# upcoming on any date (a fixed date here broke the suite the day it passed).
OPENS_AT = datetime.now(UTC).replace(hour=17, minute=0, second=0, microsecond=0) + timedelta(days=5)
AT_DROP = OPENS_AT + timedelta(minutes=5)
BEFORE_DROP = OPENS_AT - timedelta(minutes=5)
CLOSES_AT = OPENS_AT + timedelta(days=1)
AFTER_DROP = CLOSES_AT + timedelta(minutes=5)

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


def make_user(
    role: str = CUSTOMER,
    *,
    email: str | None = None,
    name: str | None = None,
    password: str = PASSWORD,
    confirmed: bool = False,
) -> User:
    """A user; ``confirmed``: their email address confirmed (now)."""
    n = next(_seq)
    user = User(
        email=email or f"{role}{n}@example.com",
        password_hash=passwords.hash_password(password),
        display_name=name or f"{role.title()} Number{n}",
        role=role,
        email_verified_at=clock.now() if confirmed else None,
    )
    db.session.add(user)
    db.session.flush()
    return user


def make_customer(**kwargs) -> User:
    return make_user(CUSTOMER, **kwargs)


def make_maker(**kwargs) -> User:
    return make_user(MAKER, **kwargs)


def make_product(maker: User | None = None, *, name: str | None = None) -> Product:
    n = next(_seq)
    maker = maker or make_maker()
    product = Product(
        maker_id=maker.id,
        name=name or f"Product {n}",
        slug=f"product-{n}",
        description="Made carefully.",
    )
    db.session.add(product)
    db.session.flush()
    return product


def make_drop(
    maker: User | None = None,
    *,
    state: str = OPEN,
    opens_at: datetime | None = OPENS_AT,
    closes_at: datetime | None = CLOSES_AT,
    title: str | None = None,
) -> Drop:
    n = next(_seq)
    maker = maker or make_maker()
    drop = Drop(
        maker_id=maker.id,
        title=title or f"Drop {n}",
        slug=f"drop-{n}",
        story="A *good* story.",
        state=state,
        opens_at=opens_at,
        closes_at=closes_at,
    )
    db.session.add(drop)
    db.session.flush()
    return drop


def make_draw_drop(
    maker: User | None = None,
    *,
    opens_at: datetime = OPENS_AT,
    closes_at: datetime = CLOSES_AT,
    state: str = OPEN,
) -> Drop:
    """A draw drop as ``drops.open_drop`` announces one: its seed set and committed to."""
    drop = make_drop(maker, state=state, opens_at=opens_at, closes_at=closes_at)
    seed = draws.new_seed()
    drop.mode = DRAW
    drop.draw_seed = seed
    drop.draw_commitment = draws.commitment_of(seed)
    db.session.flush()
    return drop


def make_batch(
    product: Product | None = None,
    drop: Drop | None = None,
    *,
    number: int = 1,
    edition_size: int = 10,
    price: int = 2500,
    currency: str = "usd",
    limit: int = 2,
    live: bool = True,
) -> Batch:
    if product is None:
        product = make_product(drop.maker if drop is not None else None)
    if drop is None and live:
        drop = make_drop(product.maker)
    batch = Batch(
        product_id=product.id,
        drop_id=drop.id if drop else None,
        number=number,
        edition_size=edition_size,
        price=price,
        currency=currency,
        per_customer_limit=limit,
        story="## Origin\nGrown *nearby*.",
        summary="Grown nearby.",
        origin_place="The valley",
        inputs="Rye",
        process="Distilled twice",
    )
    db.session.add(batch)
    db.session.flush()
    return batch

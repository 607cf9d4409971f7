"""The maker console's rules: products, batches, drops and orders as their maker sees them.

Every lookup is scoped to the maker: someone else's object is ``NotFound``, never ``Forbidden``,
so the console does not even confirm it exists. Rules that depend on stock (the edition size
of a batch that is on sale, which drop a batch belongs to, shipping an order) are conditional
UPDATEs decided by the database, never a read in Python followed by a write.

Services add and flush; the caller commits once. Nothing here knows about the request.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import Select, bindparam, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from shop import audit, images, inventory, money
from shop.errors import EditNotAllowed, InvalidInput, InvalidState, NotFound
from shop.extensions import db
from shop.models import AuditEntry, Batch, BatchImage, Drop, Order, Product, User
from shop.models.drop import CLOSED, DRAFT, OPEN, SCHEDULED
from shop.models.order import HELD, PAID, REFUNDED
from shop.models.types import UTCDateTime

MAX_IMAGES_PER_BATCH = 12
MAX_EDITION_SIZE = 1_000_000
EXPIRING_SOON = timedelta(minutes=2)


# --------------------------------------------------------------------------- lookups


def _owned(query):
    """The one row a scoped query finds, or NotFound: another maker's object looks absent."""
    found = db.session.scalar(query)
    if found is None:
        raise NotFound()
    return found


def product_for(maker: User, product_id: int) -> Product:
    return _owned(select(Product).where(Product.id == product_id, Product.maker_id == maker.id))


def batch_for(maker: User, batch_id: int) -> Batch:
    return _owned(
        select(Batch)
        .join(Product, Batch.product_id == Product.id)
        .where(Batch.id == batch_id, Product.maker_id == maker.id)
    )


def image_for(maker: User, image_id: int) -> BatchImage:
    return _owned(
        select(BatchImage)
        .join(Batch, BatchImage.batch_id == Batch.id)
        .join(Product, Batch.product_id == Product.id)
        .where(BatchImage.id == image_id, Product.maker_id == maker.id)
    )


def drop_for(maker: User, drop_id: int) -> Drop:
    return _owned(select(Drop).where(Drop.id == drop_id, Drop.maker_id == maker.id))


def order_for(maker: User, public_id: str) -> Order:
    return _owned(
        select(Order)
        .join(Batch, Order.batch_id == Batch.id)
        .join(Product, Batch.product_id == Product.id)
        .where(Order.public_id == public_id, Product.maker_id == maker.id)
    )


def products_of(maker: User) -> list[Product]:
    return list(
        db.session.scalars(
            select(Product)
            .where(Product.maker_id == maker.id)
            .options(selectinload(Product.batches).selectinload(Batch.drop))
            .order_by(Product.name)
        )
    )


def drops_of(maker: User) -> list[Drop]:
    """The maker's drops, newest first."""
    return list(
        db.session.scalars(
            select(Drop)
            .where(Drop.maker_id == maker.id)
            .options(selectinload(Drop.batches).selectinload(Batch.product))
            .order_by(Drop.created_at.desc(), Drop.id.desc())
        )
    )


@dataclass
class DropSummary:
    drop: Drop
    phase: str
    sold: int
    held: int
    edition_size: int

    ORDER = {"live": 0, "upcoming": 1, DRAFT: 2, CLOSED: 3}


def drop_summaries(maker: User, now: datetime) -> list[DropSummary]:
    """The maker's drops with their phase and unit counts: live first, then upcoming, drafts,
    and closed ones last."""
    rows = [
        DropSummary(
            drop=drop,
            phase=drop.phase(now),
            sold=sum(b.sold for b in drop.batches),
            held=sum(b.held for b in drop.batches),
            edition_size=sum(b.edition_size for b in drop.batches),
        )
        for drop in drops_of(maker)
    ]
    rows.sort(key=lambda row: DropSummary.ORDER.get(row.phase, 9))
    return rows


def batches_of(maker: User) -> list[Batch]:
    return list(
        db.session.scalars(
            select(Batch)
            .join(Product, Batch.product_id == Product.id)
            .where(Product.maker_id == maker.id)
            .options(selectinload(Batch.product))
            .order_by(Product.name, Batch.number)
        )
    )


# --------------------------------------------------------------------------- time zones


def timezone_names() -> list[str]:
    return sorted(name for name in available_timezones() if "/" in name or name == "UTC")


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def to_utc(local: datetime, zone_name: str) -> datetime:
    """A wall-clock time the maker typed, read in their time zone, as aware UTC.

    A time that does not exist there (skipped when the clocks go forward) is refused rather
    than silently moved.
    """
    tz = zone(zone_name)
    aware = local.replace(tzinfo=tz, fold=0)
    as_utc = aware.astimezone(ZoneInfo("UTC"))
    if as_utc.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise InvalidInput(
            f"{local:%-d %b %Y, %H:%M} doesn't exist in {tz.key} (the clocks skip it). "
            "Pick a time outside the change."
        )
    return as_utc


def to_local(value: datetime | None, zone_name: str) -> datetime | None:
    """An aware time as a naive wall-clock time in the maker's zone (for form inputs)."""
    if value is None:
        return None
    return value.astimezone(zone(zone_name)).replace(tzinfo=None)


def update_settings(user: User, *, display_name: str, timezone: str) -> None:
    if timezone not in available_timezones():
        raise InvalidInput("Choose a time zone from the list.")
    name = (display_name or "").strip()
    if not name:
        raise InvalidInput("Tell customers your name or your workshop's name.")
    user.display_name = name[:80]
    user.timezone = timezone
    db.session.flush()


# --------------------------------------------------------------------------- products


_NON_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(value: str, *, max_length: int = 80) -> str:
    """``"Crème Brûlée, No. 2"`` → ``"creme-brulee-no-2"``."""
    ascii_text = unicodedata.normalize("NFKD", value or "").encode("ascii", "ignore").decode()
    slug = _NON_SLUG.sub("-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def _free_slug(model: type[Product] | type[Drop], wanted: str, *, fallback: str) -> str:
    base = slugify(wanted) or fallback
    taken = set(
        db.session.scalars(
            select(model.slug).where(or_(model.slug == base, model.slug.like(f"{base}-%")))
        )
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _flush_unique(message: str) -> None:
    """Flush inside a savepoint; a UNIQUE violation (two tabs at once) becomes a clear error."""
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:
        raise InvalidInput(message) from None


def create_product(maker: User, *, name: str, description: str) -> Product:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Give the product a name.")
    product = Product(
        maker_id=maker.id,
        name=name[:120],
        slug=_free_slug(Product, name, fallback="product"),
        description=(description or "").strip(),
    )
    db.session.add(product)
    _flush_unique("That product name was just taken by another product. Try again.")
    return product


def update_product(product: Product, *, name: str, description: str) -> None:
    """Name and description change; the slug (its public address) stays put."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Give the product a name.")
    product.name = name[:120]
    product.description = (description or "").strip()
    db.session.flush()


def next_batch_number(product: Product) -> int:
    highest = db.session.scalar(
        select(func.max(Batch.number)).where(Batch.product_id == product.id)
    )
    return (highest or 0) + 1


# --------------------------------------------------------------------------- batches


@dataclass
class BatchDetails:
    """What a maker types about a batch; ``price`` is already integer minor units."""

    number: int
    edition_size: int
    price: int
    currency: str
    per_customer_limit: int
    unit_label: str = "units"
    unit_singular: str = "unit"
    summary: str = ""
    story: str = ""
    origin_place: str = ""
    produced_on: date | None = None
    inputs: str = ""
    process: str = ""

    LABELS = {
        "number": "batch number",
        "edition_size": "edition size",
        "price": "price",
        "currency": "currency",
        "per_customer_limit": "per-customer limit",
        "unit_label": "unit label",
        "unit_singular": "unit label for one",
        "summary": "summary",
        "story": "origin story",
        "origin_place": "origin place",
        "produced_on": "produced on",
        "inputs": "inputs",
        "process": "process",
    }

    def check(self) -> None:
        if self.number < 1:
            raise InvalidInput("Batch numbers start at 1.")
        if not 1 <= self.edition_size <= MAX_EDITION_SIZE:
            raise InvalidInput(f"The edition size is between 1 and {MAX_EDITION_SIZE:,}.")
        if self.price < 1:
            raise InvalidInput("Set a price above zero.")
        if self.currency not in money.SUPPORTED:
            raise InvalidInput("Choose one of the listed currencies.")
        if self.per_customer_limit < 1:
            raise InvalidInput("The per-customer limit is at least 1.")

    def values(self) -> dict:
        return {
            "number": self.number,
            "edition_size": self.edition_size,
            "price": self.price,
            "currency": self.currency,
            "per_customer_limit": self.per_customer_limit,
            "unit_label": (self.unit_label or "").strip()[:32] or "units",
            "unit_singular": (self.unit_singular or "").strip()[:32] or "unit",
            "summary": (self.summary or "").strip()[:280],
            "story": self.story or "",
            "origin_place": (self.origin_place or "").strip()[:160],
            "produced_on": self.produced_on,
            "inputs": (self.inputs or "").strip(),
            "process": (self.process or "").strip(),
        }


def has_opened(drop: Drop | None, now: datetime) -> bool:
    """True once customers could have bought from the drop: stock rules tighten from then on."""
    if drop is None:
        return False
    if drop.state == CLOSED:
        return True
    return drop.state in (SCHEDULED, OPEN) and drop.opens_at is not None and drop.opens_at <= now


def _number_taken(product_id: int, number: int, *, except_batch: int | None = None) -> bool:
    query = select(Batch.id).where(Batch.product_id == product_id, Batch.number == number)
    if except_batch is not None:
        query = query.where(Batch.id != except_batch)
    return db.session.scalar(query) is not None


def create_batch(product: Product, details: BatchDetails) -> Batch:
    details.check()
    if _number_taken(product.id, details.number):
        raise InvalidInput(
            f"{product.name} already has a Batch No. {details.number}; "
            f"the next free number is {next_batch_number(product)}."
        )
    batch = Batch(product_id=product.id, sold=0, held=0, **details.values())
    db.session.add(batch)
    _flush_unique(f"{product.name} already has a Batch No. {details.number}.")
    return batch


def update_batch(batch: Batch, details: BatchDetails, *, actor: User, now: datetime) -> list[str]:
    """Apply the maker's edits; returns the labels of what changed.

    Once the batch's drop has opened the number and currency are fixed, and the edition size
    may grow but never shrink below sold + held — decided by one conditional UPDATE, so a hold
    landing at the same moment can't slip past it. Price changes affect new holds only: orders
    copied their price when they were placed. Edits to a batch that has gone on sale are audited.
    """
    details.check()
    opened = has_opened(batch.drop, now)
    wanted = details.values()
    if opened and wanted["currency"] != batch.currency:
        raise EditNotAllowed(
            "The currency can't change once the drop has opened — customers have paid in "
            f"{batch.currency.upper()}."
        )
    if opened and wanted["number"] != batch.number:
        raise EditNotAllowed(
            "The batch number can't change once the drop has opened — it's printed on "
            "customers' certificates."
        )
    if wanted["number"] != batch.number and _number_taken(
        batch.product_id, wanted["number"], except_batch=batch.id
    ):
        raise EditNotAllowed(f"{batch.product.name} already has a Batch No. {wanted['number']}.")

    before = {name: getattr(batch, name) for name in wanted}
    if wanted["edition_size"] != batch.edition_size:
        inventory.resize_edition(batch, wanted["edition_size"])
    for name, value in wanted.items():
        if name != "edition_size":
            setattr(batch, name, value)
    db.session.flush()
    changed = [name for name in wanted if before[name] != getattr(batch, name)]
    if opened and changed:
        audit.record(
            "batch.edited",
            actor=actor,
            batch=batch,
            detail=_describe_changes(before, batch, changed),
        )
        db.session.flush()
    return [BatchDetails.LABELS[name] for name in changed]


def _describe_changes(before: dict, batch: Batch, changed: list[str]) -> str:
    parts = []
    for name in changed:
        old, new = before[name], getattr(batch, name)
        if name == "price":
            old = money.format_money(old, batch.currency)
            new = money.format_money(new, batch.currency)
        if name in ("story", "inputs", "process", "summary"):
            parts.append(f"{BatchDetails.LABELS[name]} rewritten")
        else:
            parts.append(f"{BatchDetails.LABELS[name]} {old} → {new}")
    return "; ".join(parts)


def add_image(batch: Batch, data: bytes, *, alt: str, actor: User, now: datetime) -> BatchImage:
    """Validate, re-encode and attach an image; InvalidInput with a clear reason otherwise."""
    alt = (alt or "").strip()
    if not alt:
        raise InvalidInput("Describe the picture in a few words for people who can't see it.")
    count = db.session.scalar(
        select(func.count()).select_from(BatchImage).where(BatchImage.batch_id == batch.id)
    )
    if count >= MAX_IMAGES_PER_BATCH:
        raise InvalidInput(f"A batch can have up to {MAX_IMAGES_PER_BATCH} images.")
    stored = images.store(data)
    position = db.session.scalar(
        select(func.coalesce(func.max(BatchImage.position), -1) + 1).where(
            BatchImage.batch_id == batch.id
        )
    )
    image = BatchImage(
        batch_id=batch.id,
        filename=stored.filename,
        content_type=stored.content_type,
        width=stored.width,
        height=stored.height,
        alt=alt[:200],
        position=position,
        created_at=now,
    )
    db.session.add(image)
    db.session.flush()
    if has_opened(batch.drop, now):
        audit.record("batch.image_added", actor=actor, batch=batch, detail=alt[:200])
    return image


def update_image_alt(image: BatchImage, alt: str) -> None:
    alt = (alt or "").strip()
    if not alt:
        raise InvalidInput("Describe the picture in a few words for people who can't see it.")
    image.alt = alt[:200]
    db.session.flush()


def remove_image(image: BatchImage, *, actor: User, now: datetime) -> str:
    """Delete the image row; returns the file name to discard once the deletion commits."""
    batch = image.batch
    filename = image.filename
    if has_opened(batch.drop, now):
        audit.record("batch.image_removed", actor=actor, batch=batch, detail=image.alt)
    db.session.delete(image)
    db.session.flush()
    return filename


# --------------------------------------------------------------------------- drops


def assignable_batches(maker: User, drop: Drop | None = None) -> list[Batch]:
    """The maker's batches that are in no drop yet (or already in this one)."""
    condition = Batch.drop_id.is_(None)
    if drop is not None and drop.id is not None:
        condition = or_(condition, Batch.drop_id == drop.id)
    return list(
        db.session.scalars(
            select(Batch)
            .join(Product, Batch.product_id == Product.id)
            .where(Product.maker_id == maker.id, condition)
            .options(selectinload(Batch.product))
            .order_by(Product.name, Batch.number)
        )
    )


@dataclass
class DropDetails:
    title: str
    story: str = ""
    slug: str = ""
    batch_ids: list[int] = field(default_factory=list)
    opens_at: datetime | None = None
    closes_at: datetime | None = None


def _check_window(opens_at: datetime | None, closes_at: datetime | None) -> None:
    if opens_at is not None and closes_at is not None and closes_at <= opens_at:
        raise InvalidInput("The closing time must be after the opening time.")


def _drop_slug(details: DropDetails, *, current: Drop | None = None) -> str:
    wanted = (details.slug or "").strip()
    if not wanted:
        if current is not None:
            return current.slug
        return _free_slug(Drop, details.title, fallback="drop")
    slug = slugify(wanted)
    if not slug:
        raise InvalidInput("Use letters, numbers and dashes for the web address.")
    clash = select(Drop.id).where(Drop.slug == slug)
    if current is not None:
        clash = clash.where(Drop.id != current.id)
    if db.session.scalar(clash) is not None:
        raise InvalidInput(f"The address /drops/{slug} is already taken; choose another.")
    return slug


def create_drop(maker: User, details: DropDetails, *, actor: User, now: datetime) -> Drop:
    """A draft drop with its batches; it goes on sale only through ``shop.drops.open_drop``."""
    title = (details.title or "").strip()
    if not title:
        raise InvalidInput("Give the drop a title.")
    _check_window(details.opens_at, details.closes_at)
    drop = Drop(
        maker_id=maker.id,
        title=title[:140],
        slug=_drop_slug(details),
        story=details.story or "",
        state=DRAFT,
        opens_at=details.opens_at,
        closes_at=details.closes_at,
        created_at=now,
    )
    db.session.add(drop)
    _flush_unique("That web address was just taken; choose another.")
    _assign_batches(maker, drop, details.batch_ids)
    audit.record("drop.created", actor=actor, drop=drop)
    db.session.flush()
    return drop


def update_drop(drop: Drop, details: DropDetails, *, actor: User, now: datetime) -> None:
    """Title and story can always change. The address, batches and planned window can change
    only while the drop is a draft; after that the open/close steps move the window."""
    title = (details.title or "").strip()
    if not title:
        raise InvalidInput("Give the drop a title.")
    draft = drop.state == DRAFT
    if not draft:
        wanted_ids = sorted(set(details.batch_ids))
        current_ids = sorted(b.id for b in drop.batches)
        if wanted_ids != current_ids:
            raise EditNotAllowed(
                "Batches can't be added or removed once a drop is scheduled or open. "
                "Start a new drop for other batches."
            )
        if details.slug and slugify(details.slug) != drop.slug:
            raise EditNotAllowed("The web address can't change once the drop has been announced.")
    changed = []
    if drop.title != title[:140]:
        changed.append("title")
    if drop.story != (details.story or ""):
        changed.append("story")
    drop.title = title[:140]
    drop.story = details.story or ""
    if draft:
        _check_window(details.opens_at, details.closes_at)
        drop.slug = _drop_slug(details, current=drop)
        drop.opens_at = details.opens_at
        drop.closes_at = details.closes_at
        _flush_unique("That web address was just taken; choose another.")
        _assign_batches(drop.maker, drop, details.batch_ids)
    db.session.flush()
    if not draft and changed:
        audit.record("drop.edited", actor=actor, drop=drop, detail=", ".join(changed) + " edited")
        db.session.flush()


def _assign_batches(maker: User, drop: Drop, batch_ids: Iterable[int]) -> None:
    """Make exactly ``batch_ids`` the drop's batches. Taking a batch is a conditional UPDATE,
    so two drops created at once in two tabs can't both claim it."""
    wanted = set(batch_ids)
    for batch in list(drop.batches):
        if batch.id not in wanted:
            batch.drop_id = None
    db.session.flush()
    for batch_id in sorted(wanted):
        batch = batch_for(maker, batch_id)
        taken = db.session.execute(
            text(
                "UPDATE batches SET drop_id = :drop WHERE id = :id "
                "AND (drop_id IS NULL OR drop_id = :drop)"
            ),
            {"drop": drop.id, "id": batch.id},
        ).rowcount
        if taken != 1:
            raise EditNotAllowed(f"{batch.title} is already in another drop.")
    db.session.expire(drop, ["batches"])
    for batch in db.session.identity_map.values():
        if isinstance(batch, Batch):
            db.session.expire(batch, ["drop_id", "drop"])


def audit_trail(drop: Drop, *, limit: int = 200) -> list[AuditEntry]:
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


# --------------------------------------------------------------------------- live numbers


@dataclass
class BatchLive:
    batch: Batch
    sold: int
    held: int
    left: int
    edition_size: int
    sold_out_after: timedelta | None

    @property
    def sold_percent(self) -> float:
        return round(100 * self.sold / self.edition_size, 1) if self.edition_size else 0.0

    @property
    def held_percent(self) -> float:
        return round(100 * self.held / self.edition_size, 1) if self.edition_size else 0.0


@dataclass
class LiveStats:
    drop: Drop
    now: datetime
    phase: str
    batches: list[BatchLive]
    revenue: dict[str, int]
    paid_count: int
    paid_orders: list[Order]
    holds: list[Order]
    open_for: timedelta | None
    sold_out_after: timedelta | None

    @property
    def units_sold(self) -> int:
        return sum(b.sold for b in self.batches)

    @property
    def units_held(self) -> int:
        return sum(b.held for b in self.batches)

    @property
    def units_left(self) -> int:
        return sum(b.left for b in self.batches)

    def expiring_soon(self, order: Order) -> bool:
        return order.hold_expires_at is not None and order.hold_expires_at - self.now <= (
            EXPIRING_SOON
        )

    def as_json(self) -> dict:
        return {
            "phase": self.phase,
            "units": {"sold": self.units_sold, "held": self.units_held, "left": self.units_left},
            "revenue": [
                {"currency": c, "amount": a, "formatted": money.format_money(a, c)}
                for c, a in sorted(self.revenue.items())
            ],
            "batches": [
                {
                    "id": b.batch.id,
                    "sold": b.sold,
                    "held": b.held,
                    "left": b.left,
                    "edition_size": b.edition_size,
                }
                for b in self.batches
            ],
            "paid_orders": self.paid_count,
            "holds": len(self.holds),
            "open_seconds": int(self.open_for.total_seconds()) if self.open_for else None,
            "sold_out_seconds": (
                int(self.sold_out_after.total_seconds()) if self.sold_out_after else None
            ),
        }


def live_stats(drop: Drop, now: datetime, *, recent: int = 20) -> LiveStats:
    """Sold / held / left per batch, revenue, holds by expiry and the latest paid orders.

    Numbers come fresh from the database, not from what the session cached earlier.
    """
    db.session.expire_all()
    batches = list(
        db.session.scalars(
            select(Batch)
            .where(Batch.drop_id == drop.id)
            .options(selectinload(Batch.product))
            .order_by(Batch.id)
        )
    )
    ids = [b.id for b in batches]
    revenue = {
        currency: int(total)
        for currency, total in db.session.execute(
            select(Order.currency, func.sum(Order.amount))
            .where(Order.batch_id.in_(ids), Order.state == PAID)
            .group_by(Order.currency)
        )
    }
    paid_count = db.session.scalar(
        select(func.count()).select_from(Order).where(Order.batch_id.in_(ids), Order.state == PAID)
    )
    last_paid = dict(
        db.session.execute(
            select(Order.batch_id, func.max(Order.paid_at))
            .where(Order.batch_id.in_(ids), Order.paid_at.is_not(None))
            .group_by(Order.batch_id)
        ).all()
    )
    opened = drop.opens_at if drop.opens_at is not None and drop.opens_at <= now else None
    rows = []
    for batch in batches:
        sold_out_after = None
        last = last_paid.get(batch.id)
        if batch.remaining <= 0 and batch.held == 0 and last is not None and opened is not None:
            sold_out_after = max(timedelta(0), last - opened)
        rows.append(
            BatchLive(
                batch=batch,
                sold=batch.sold,
                held=batch.held,
                left=batch.remaining,
                edition_size=batch.edition_size,
                sold_out_after=sold_out_after,
            )
        )
    everything_gone = bool(rows) and all(r.sold_out_after is not None for r in rows)
    paid_orders = list(
        db.session.scalars(
            select(Order)
            .where(Order.batch_id.in_(ids), Order.state.in_((PAID, REFUNDED)))
            .options(selectinload(Order.units), selectinload(Order.batch))
            .order_by(Order.paid_at.desc(), Order.id.desc())
            .limit(recent)
        )
    )
    holds = list(
        db.session.scalars(
            select(Order)
            .where(Order.batch_id.in_(ids), Order.state == HELD)
            .options(selectinload(Order.batch))
            .order_by(Order.hold_expires_at, Order.id)
            .limit(recent)
        )
    )
    closed_at = drop.closed_at or (
        drop.closes_at if drop.closes_at is not None and drop.closes_at <= now else None
    )
    return LiveStats(
        drop=drop,
        now=now,
        phase=drop.phase(now),
        batches=rows,
        revenue=revenue,
        paid_count=paid_count or 0,
        paid_orders=paid_orders,
        holds=holds,
        open_for=((closed_at or now) - opened) if opened is not None else None,
        sold_out_after=max(r.sold_out_after for r in rows) if everything_gone else None,  # type: ignore[type-var]
    )


def dashboard_numbers(maker: User) -> dict:
    """Headline numbers for the console's front page."""
    batch_ids = (
        select(Batch.id)
        .join(Product, Batch.product_id == Product.id)
        .where(Product.maker_id == maker.id)
    )
    revenue = dict(
        db.session.execute(
            select(Order.currency, func.sum(Order.amount))
            .where(Order.batch_id.in_(batch_ids), Order.state == PAID)
            .group_by(Order.currency)
        ).all()
    )
    to_ship = db.session.scalar(
        select(func.count())
        .select_from(Order)
        .where(Order.batch_id.in_(batch_ids), Order.state == PAID, Order.shipped_at.is_(None))
    )
    return {"revenue": {c: int(a) for c, a in revenue.items()}, "to_ship": to_ship or 0}


# --------------------------------------------------------------------------- orders


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
        text(
            "UPDATE orders SET carrier = :carrier, tracking_number = :tracking, "
            "shipped_at = COALESCE(shipped_at, :now) WHERE id = :id AND state = 'paid'"
        ).bindparams(bindparam("now", type_=UTCDateTime())),
        {"carrier": carrier, "tracking": tracking_number or None, "now": now, "id": order.id},
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


# --------------------------------------------------------------------------- CSV export

CSV_COLUMNS = [
    "order",
    "created (UTC)",
    "paid (UTC)",
    "state",
    "drop",
    "product",
    "batch",
    "quantity",
    "serials",
    "unit price",
    "amount",
    "currency",
    "customer email",
    "ship to",
    "address",
    "carrier",
    "tracking number",
    "shipped (UTC)",
    "refunded (UTC)",
    "payment reference",
]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> str:
    """A cell a spreadsheet shows as text: anything that could start a formula gets a ``'``."""
    cell = "" if value is None else str(value)
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def decimal_amount(amount: int, currency: str) -> str:
    """``9500, "usd"`` → ``"95.00"``: for form inputs and CSV cells."""
    places = money.decimals(currency)
    return f"{amount / 10**places:.{places}f}" if places else str(amount)


def _utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def csv_rows(orders: Iterable[Order]) -> Iterator[list[str]]:
    yield CSV_COLUMNS
    for order in orders:
        shipping = order.shipping if isinstance(order.shipping, dict) else {}
        lines = shipping_lines(shipping)
        row = [
            order.public_id,
            _utc(order.created_at),
            _utc(order.paid_at),
            order.state,
            order.batch.drop.title if order.batch.drop else "",
            order.batch.product.name,
            order.batch.number,
            order.quantity,
            " ".join(str(u.serial) for u in order.units),
            decimal_amount(order.unit_price, order.currency),
            decimal_amount(order.amount, order.currency),
            order.currency.upper(),
            order.customer_email or order.customer.email,
            lines[0] if lines else "",
            ", ".join(lines[1:]),
            order.carrier or "",
            order.tracking_number or "",
            _utc(order.shipped_at),
            _utc(order.refunded_at),
            order.payment_intent_id or "",
        ]
        yield [spreadsheet_safe(cell) for cell in row]


def orders_csv(maker: User, filters: OrderFilter) -> str:
    """Every order matching ``filters`` as CSV text (serials included, formula-safe)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(csv_rows(db.session.scalars(orders_query(maker, filters))))
    return out.getvalue()

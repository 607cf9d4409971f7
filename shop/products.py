"""Products, their numbered batches and the batches' images, as their maker edits them.

Lookups are scoped to the maker: another maker's object is ``NotFound``, never ``Forbidden``.
Every change is audited (``audit.record``) with its actor: the maker, or ``audit.CLI``.
The one stock rule here (an edition may grow, never shrink below sold + held) is decided by
``inventory.resize_edition``'s conditional UPDATE. Services add and flush; the caller commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from shop import (
    audit,
    database,
    image_store,
    images,
    inventory,
    money,
    page_cache,
    shipping_rates,
    slugs,
)
from shop.errors import EditNotAllowed, InvalidInput
from shop.extensions import db
from shop.models import Batch, BatchImage, Drop, EditionChange, Product, User
from shop.models.drop import DRAFT

MAX_IMAGES_PER_BATCH = 12
MAX_EDITION_SIZE = 1_000_000
MIN_AGE, MAX_AGE = 1, 99  # the batches table's minimum_age_sane CHECK
TAX_CODE = re.compile(r"txcd_\d{8}")


def product_for(maker: User, product_id: int) -> Product:
    return database.one_or_not_found(
        select(Product).where(Product.id == product_id, Product.maker_id == maker.id)
    )


def batch_for(maker: User, batch_id: int) -> Batch:
    return database.one_or_not_found(
        select(Batch)
        .join(Product, Batch.product_id == Product.id)
        .where(Batch.id == batch_id, Product.maker_id == maker.id)
    )


def image_for(maker: User, image_id: int) -> BatchImage:
    return database.one_or_not_found(
        select(BatchImage)
        .join(Batch, BatchImage.batch_id == Batch.id)
        .join(Product, Batch.product_id == Product.id)
        .where(BatchImage.id == image_id, Product.maker_id == maker.id)
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


def create_product(maker: User, *, name: str, description: str, actor: audit.Actor) -> Product:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Give the product a name.")
    product = Product(
        maker_id=maker.id,
        name=name[:120],
        slug=slugs.free_slug(Product, name, fallback="product"),
        description=(description or "").strip(),
    )
    db.session.add(product)
    database.flush_unique("That product name was just taken by another product. Try again.")
    audit.record("product.created", actor=actor, product=product, detail=product.name)
    return product


def update_product(product: Product, *, name: str, description: str, actor: audit.Actor) -> None:
    """Name and description change; the slug (its public address) stays put."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Give the product a name.")
    changed = []
    if product.name != name[:120]:
        changed.append(f"name {product.name} → {name[:120]}")
    if product.description != (description or "").strip():
        changed.append("description rewritten")
    product.name = name[:120]
    product.description = (description or "").strip()
    if changed:
        audit.record("product.edited", actor=actor, product=product, detail="; ".join(changed))
    db.session.flush()
    page_cache.content_changed(product_ids=[product.id])


def next_batch_number(product: Product) -> int:
    highest = db.session.scalar(
        select(func.max(Batch.number)).where(Batch.product_id == product.id)
    )
    return (highest or 0) + 1


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
    ships_to: str = ""  # as typed: "de, fr gb"; checked and sorted by ``check``
    minimum_age: int | None = None
    tax_code: str = ""
    edition_reason: str = ""  # why the edition size changes (required once the drop opened)

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
        "ships_to": "ships-to countries",
        "minimum_age": "minimum age",
        "tax_code": "tax code",
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
        shipping_rates.parse_countries(self.ships_to, field="Ships only to")
        if self.minimum_age is not None and not MIN_AGE <= self.minimum_age <= MAX_AGE:
            raise InvalidInput(f"A minimum age is between {MIN_AGE} and {MAX_AGE}.")
        if self.tax_code and not TAX_CODE.fullmatch(self.tax_code.strip()):
            raise InvalidInput(
                "A Stripe tax code looks like txcd_99999999 (eight digits); leave it empty "
                "for the product's default."
            )

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
            "ships_to": ",".join(shipping_rates.parse_countries(self.ships_to)),
            "minimum_age": self.minimum_age,
            "tax_code": (self.tax_code or "").strip() or None,
        }


def _resize(batch: Batch, size: int, reason: str, opened: bool, now: datetime) -> None:
    """Change the edition size; once the drop is published the change goes on the batch's
    public ledger, and once it has opened the maker must say why."""
    if opened and not reason and size >= batch.sold + batch.held + batch.reserved:  # else refused
        raise EditNotAllowed(
            f"Say why the edition changes from {batch.edition_size} to {size}: once the drop "
            "has opened, the reason is shown on the batch's public ledger."
        )
    from_size = batch.edition_size
    inventory.resize_edition(batch, size)
    if batch.drop is not None and batch.drop.state != DRAFT:
        db.session.add(
            EditionChange(
                batch_id=batch.id,
                from_size=from_size,
                to_size=size,
                reason=reason[:500],
                changed_at=now,
            )
        )


def on_sale(batch: Batch, now: datetime) -> bool:
    """True once the batch's drop has opened: number and currency freeze."""
    drop: Drop | None = batch.drop
    return drop is not None and drop.has_opened(now)


def _number_taken(product_id: int, number: int, *, except_batch: int | None = None) -> bool:
    query = select(Batch.id).where(Batch.product_id == product_id, Batch.number == number)
    if except_batch is not None:
        query = query.where(Batch.id != except_batch)
    return db.session.scalar(query) is not None


def create_batch(product: Product, details: BatchDetails, *, actor: audit.Actor) -> Batch:
    details.check()
    if _number_taken(product.id, details.number):
        raise InvalidInput(
            f"{product.name} already has a Batch No. {details.number}; "
            f"the next free number is {next_batch_number(product)}."
        )
    batch = Batch(product_id=product.id, sold=0, held=0, **details.values())
    db.session.add(batch)
    database.flush_unique(f"{product.name} already has a Batch No. {details.number}.")
    audit.record(
        "batch.created",
        actor=actor,
        product=product,
        batch=batch,
        detail=f"Batch No. {batch.number}, edition of {batch.edition_size}",
    )
    return batch


def update_batch(
    batch: Batch, details: BatchDetails, *, actor: audit.Actor, now: datetime
) -> list[str]:
    """Apply the maker's edits; returns the labels of what changed.

    Once the batch's drop has opened the number and currency are fixed, and the edition size
    may grow but never shrink below sold + held — decided by one conditional UPDATE, so a hold
    landing at the same moment can't slip past it. Price changes affect new holds only: orders
    copied their price when they were placed. Every edit is audited, with what changed.
    """
    details.check()
    opened = on_sale(batch, now)
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
        _resize(batch, wanted["edition_size"], (details.edition_reason or "").strip(), opened, now)
    for name, value in wanted.items():
        if name != "edition_size":
            setattr(batch, name, value)
    db.session.flush()
    changed = [name for name in wanted if before[name] != getattr(batch, name)]
    page_cache.content_changed(batch_ids=[batch.id])
    if changed:
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


def add_image(
    batch: Batch, data: bytes, *, alt: str, actor: audit.Actor, now: datetime
) -> BatchImage:
    """Validate, re-encode and attach an image; InvalidInput with a clear reason otherwise.

    The cap is the batch's free slots (``BatchImage.slot``, UNIQUE per batch): the picture is
    decoded first, outside any lock, then takes the lowest free slot; when a parallel upload
    took it first the UNIQUE constraint refuses and the next free one is tried, until none is
    left. A refused picture's bytes go with the caller's rolled-back transaction.
    """
    alt = (alt or "").strip()
    if not alt:
        raise InvalidInput("Describe the picture in a few words for people who can't see it.")
    _free_slot(batch)  # refuse a full batch before the work of decoding
    stored = images.store(data)
    image = _insert_image(batch, stored, alt=alt[:200], now=now)
    audit.record("batch.image_added", actor=actor, batch=batch, detail=alt[:200])
    page_cache.content_changed(batch_ids=[batch.id])
    return image


def _free_slot(batch: Batch) -> int:
    """The batch's lowest free slot below the cap, as this transaction sees it."""
    taken = set(db.session.scalars(select(BatchImage.slot).where(BatchImage.batch_id == batch.id)))
    free = [slot for slot in range(MAX_IMAGES_PER_BATCH) if slot not in taken]
    if not free or len(taken) >= MAX_IMAGES_PER_BATCH:
        raise InvalidInput(f"A batch can have up to {MAX_IMAGES_PER_BATCH} images.")
    return free[0]


def _insert_image(batch: Batch, stored: images.StoredImage, *, alt: str, now: datetime):
    """Insert the picture in a free slot; the UNIQUE (batch, slot) constraint decides races."""
    for _attempt in range(MAX_IMAGES_PER_BATCH):
        image = BatchImage(
            batch_id=batch.id,
            slot=_free_slot(batch),
            filename=stored.filename,
            digest=stored.digest,
            content_type=stored.content_type,
            width=stored.width,
            height=stored.height,
            alt=alt,
            position=select(func.coalesce(func.max(BatchImage.position), -1) + 1)
            .where(BatchImage.batch_id == batch.id)
            .scalar_subquery(),
            created_at=now,
        )
        try:
            with db.session.begin_nested():
                db.session.add(image)
                db.session.flush()
        except IntegrityError:
            continue  # a parallel upload took that slot first
        db.session.refresh(image, ["position"])
        return image
    raise InvalidInput(f"A batch can have up to {MAX_IMAGES_PER_BATCH} images.")


def update_image_alt(image: BatchImage, alt: str, *, actor: audit.Actor) -> None:
    alt = (alt or "").strip()
    if not alt:
        raise InvalidInput("Describe the picture in a few words for people who can't see it.")
    if image.alt != alt[:200]:
        audit.record(
            "batch.image_described", actor=actor, batch=image.batch, detail=f"{image.alt} → {alt}"
        )
    image.alt = alt[:200]
    db.session.flush()
    page_cache.content_changed(batch_ids=[image.batch_id])


def remove_image(image: BatchImage, *, actor: audit.Actor, now: datetime) -> None:
    """Delete the picture, and its stored bytes unless another picture shows the same."""
    digest, batch_id = image.digest, image.batch_id
    audit.record("batch.image_removed", actor=actor, batch=image.batch, detail=image.alt)
    db.session.delete(image)
    db.session.flush()
    image_store.release(digest)
    page_cache.content_changed(batch_ids=[batch_id])

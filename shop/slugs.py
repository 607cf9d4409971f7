"""Web addresses: ``slugify`` and a free slug for a product or a drop."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import or_, select

from shop.extensions import db
from shop.models import Drop, Product

_NON_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(value: str, *, max_length: int = 80) -> str:
    """``"Crème Brûlée, No. 2"`` → ``"creme-brulee-no-2"``."""
    ascii_text = unicodedata.normalize("NFKD", value or "").encode("ascii", "ignore").decode()
    slug = _NON_SLUG.sub("-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def free_slug(model: type[Product] | type[Drop], wanted: str, *, fallback: str) -> str:
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

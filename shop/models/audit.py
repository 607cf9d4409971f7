"""Who did what in a maker's shop, and when: drops, batches, products, images, settings,
shipping rates, orders and refunds — from the console, the command line or the shop itself."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop import clock
from shop.extensions import db
from shop.models.types import UTCDateTime

if TYPE_CHECKING:
    from shop.models.catalog import Batch, Product
    from shop.models.drop import Drop
    from shop.models.order import Order
    from shop.models.user import User

# Who acted: a person signed in (``actor_id`` names them), a ``flask shop …`` command run on
# the server, or the shop itself (a webhook, the sweeper).
PERSON: Final = "person"
CLI: Final = "cli"
SYSTEM: Final = "system"
ACTOR_KINDS = (PERSON, CLI, SYSTEM)


class AuditEntry(db.Model):
    __tablename__ = "audit_entries"
    __table_args__ = (
        CheckConstraint(f"actor_kind IN {ACTOR_KINDS!r}", name="actor_kind_known"),
        CheckConstraint(
            f"(actor_kind = '{PERSON}' AND actor_id IS NOT NULL)"
            f" OR (actor_kind <> '{PERSON}' AND actor_id IS NULL)",
            name="actor_matches_kind",
        ),
        # A maker's history, newest first, paged by id.
        Index("ix_audit_entries_maker_id_id", "maker_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_kind: Mapped[str] = mapped_column(String(8), default=PERSON)
    # Whose shop the entry is about (set from the drop, batch, product or order, or given),
    # so a maker's history shows what was done through the command line too.
    maker_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"), index=True)
    drop_id: Mapped[int | None] = mapped_column(ForeignKey("drops.id"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    actor: Mapped[User | None] = relationship(foreign_keys=[actor_id])
    product: Mapped[Product | None] = relationship()
    drop: Mapped[Drop | None] = relationship()
    batch: Mapped[Batch | None] = relationship()
    order: Mapped[Order | None] = relationship()

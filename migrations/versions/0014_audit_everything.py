"""audit_entries: actor_kind, maker_id, product_id — every maker action, the CLI's as "cli"

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 10:00:00

The audit trail recorded drops, live batch edits and orders; it now records everything done in
a maker's shop (products, batches, images, settings, shipping rates, message retries) and who
did it: a signed-in person (actor_id), a ``flask shop …`` command ("cli") or the shop itself
("system"). Each entry names the maker whose shop it is about, so the maker's history page reads
one index. Existing entries: those without an actor were written by the command line (the only
caller that passed none); their maker is taken from their drop, batch or order.
"""

import sqlalchemy as sa
from alembic import op


revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("actor_kind", sa.String(length=8), nullable=False, server_default="person")
        )
        batch_op.add_column(sa.Column("maker_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("product_id", sa.Integer(), nullable=True))
    op.execute("UPDATE audit_entries SET actor_kind = 'cli' WHERE actor_id IS NULL")
    op.execute(
        "UPDATE audit_entries SET maker_id = (SELECT d.maker_id FROM drops d"
        " WHERE d.id = audit_entries.drop_id) WHERE drop_id IS NOT NULL"
    )
    op.execute(
        "UPDATE audit_entries SET product_id = (SELECT b.product_id FROM batches b"
        " WHERE b.id = audit_entries.batch_id) WHERE batch_id IS NOT NULL"
    )
    op.execute(
        "UPDATE audit_entries SET product_id = (SELECT b.product_id FROM orders o"
        " JOIN batches b ON b.id = o.batch_id WHERE o.id = audit_entries.order_id)"
        " WHERE product_id IS NULL AND order_id IS NOT NULL"
    )
    op.execute(
        "UPDATE audit_entries SET maker_id = (SELECT p.maker_id FROM products p"
        " WHERE p.id = audit_entries.product_id)"
        " WHERE maker_id IS NULL AND product_id IS NOT NULL"
    )
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.alter_column("actor_kind", server_default=None)
        batch_op.create_foreign_key(
            batch_op.f("fk_audit_entries_maker_id_users"), "users", ["maker_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_audit_entries_product_id_products"), "products", ["product_id"], ["id"]
        )
        batch_op.create_index("ix_audit_entries_maker_id_id", ["maker_id", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_entries_product_id"), ["product_id"], unique=False
        )
        batch_op.create_check_constraint(
            op.f("ck_audit_entries_actor_kind_known"), "actor_kind IN ('person', 'cli', 'system')"
        )
        batch_op.create_check_constraint(
            op.f("ck_audit_entries_actor_matches_kind"),
            "(actor_kind = 'person' AND actor_id IS NOT NULL)"
            " OR (actor_kind <> 'person' AND actor_id IS NULL)",
        )


def downgrade():
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_audit_entries_actor_matches_kind"), type_="check")
        batch_op.drop_constraint(op.f("ck_audit_entries_actor_kind_known"), type_="check")
        batch_op.drop_index(batch_op.f("ix_audit_entries_product_id"))
        batch_op.drop_index("ix_audit_entries_maker_id_id")
        batch_op.drop_constraint(
            batch_op.f("fk_audit_entries_product_id_products"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("fk_audit_entries_maker_id_users"), type_="foreignkey")
        batch_op.drop_column("product_id")
        batch_op.drop_column("maker_id")
        batch_op.drop_column("actor_kind")

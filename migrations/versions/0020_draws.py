"""draws: a drop sold by a draw among entries, with a committed seed

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 09:00:00

A draw drop takes entries in its window instead of buys. Its seed is generated when the drop is
announced and its SHA-256 (the commitment) is public from then on; after the draw the seed and
the entries (public ids and quantities) are published so anyone can recompute the winners
(shop/draws.py, shop/verify_draw.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("drops") as batch:
        batch.add_column(
            sa.Column("mode", sa.String(length=8), nullable=False, server_default="sale")
        )
        batch.add_column(sa.Column("draw_seed", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("draw_commitment", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("drawn_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint("mode_known", "mode IN ('sale', 'draw')")
        batch.create_check_constraint(
            "seed_with_commitment", "(draw_seed IS NULL) = (draw_commitment IS NULL)"
        )
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("draw_units", sa.Integer(), nullable=True))
    op.create_table(
        "draw_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("drop_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("won_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("passed_on", sa.Boolean(), nullable=False),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_draw_entries_quantity_positive")),
        sa.CheckConstraint(
            "units >= 0 AND units <= quantity", name=op.f("ck_draw_entries_units_within_quantity")
        ),
        sa.CheckConstraint(
            "state IN ('entered', 'won', 'waiting', 'lapsed')",
            name=op.f("ck_draw_entries_state_known"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_draw_entries_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["users.id"], name=op.f("fk_draw_entries_customer_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["drop_id"], ["drops.id"], name=op.f("fk_draw_entries_drop_id_drops")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_draw_entries_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_draw_entries")),
        sa.UniqueConstraint(
            "batch_id", "customer_id", name=op.f("uq_draw_entries_batch_id_customer_id")
        ),
        sa.UniqueConstraint(
            "batch_id", "position", name=op.f("uq_draw_entries_batch_id_position")
        ),
        sa.UniqueConstraint("public_id", name=op.f("uq_draw_entries_public_id")),
    )
    op.create_index(
        "ix_draw_entries_drop_id_state", "draw_entries", ["drop_id", "state"], unique=False
    )
    op.create_index(
        op.f("ix_draw_entries_customer_id"), "draw_entries", ["customer_id"], unique=False
    )


def downgrade():
    op.drop_index(op.f("ix_draw_entries_customer_id"), table_name="draw_entries")
    op.drop_index("ix_draw_entries_drop_id_state", table_name="draw_entries")
    op.drop_table("draw_entries")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("draw_units")
    with op.batch_alter_table("drops") as batch:
        batch.drop_constraint("seed_with_commitment", type_="check")
        batch.drop_constraint("mode_known", type_="check")
        batch.drop_column("drawn_at")
        batch.drop_column("draw_commitment")
        batch.drop_column("draw_seed")
        batch.drop_column("mode")

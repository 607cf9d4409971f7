"""waitlist: places in line for a sold-out batch, and the units set aside for them

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 09:30:00

On a sold-out batch a customer takes a place in line (``waitlist_places``). Units that come free
while anyone waits are not returned to the crowd: the release moves them to ``batches.reserved``
and the worker offers them, in line order, as personal holds. ``batches.waiting`` counts the
places still waiting, on the batch row itself, so the release decides in its own UPDATE whom the
units go to. No oversell now reads ``sold + held + reserved <= edition_size``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

ACTIVE = "state IN ('waiting', 'offered')"


def upgrade():
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("reserved", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("waiting", sa.Integer(), server_default="0", nullable=False))
        batch.drop_constraint(op.f("ck_batches_no_oversell"), type_="check")
        batch.create_check_constraint(
            op.f("ck_batches_no_oversell"), "sold + held + reserved <= edition_size"
        )
        batch.create_check_constraint(op.f("ck_batches_reserved_not_negative"), "reserved >= 0")
        batch.create_check_constraint(op.f("ck_batches_waiting_not_negative"), "waiting >= 0")
        batch.create_check_constraint(
            op.f("ck_batches_reserved_only_while_waiting"), "reserved = 0 OR waiting > 0"
        )
    op.create_table(
        "waitlist_places",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_waitlist_places_quantity_positive")),
        sa.CheckConstraint(
            "state IN ('waiting', 'offered', 'left', 'lapsed', 'bought', 'ended')",
            name=op.f("ck_waitlist_places_state_known"),
        ),
        sa.CheckConstraint(
            "(state = 'waiting') = (order_id IS NULL) OR state IN ('left', 'ended')",
            name=op.f("ck_waitlist_places_offer_has_order"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_waitlist_places_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["users.id"], name=op.f("fk_waitlist_places_customer_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_waitlist_places_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_places")),
        sa.UniqueConstraint("public_id", name=op.f("uq_waitlist_places_public_id")),
    )
    with op.batch_alter_table("waitlist_places") as batch:
        batch.create_index("ix_waitlist_places_line", ["batch_id", "state", "id"])
        batch.create_index(
            "uq_waitlist_places_one_per_account",
            ["batch_id", "customer_id"],
            unique=True,
            sqlite_where=sa.text(ACTIVE),
            postgresql_where=sa.text(ACTIVE),
        )
        batch.create_index(batch.f("ix_waitlist_places_customer_id"), ["customer_id"])
        batch.create_index(batch.f("ix_waitlist_places_order_id"), ["order_id"])


def downgrade():
    op.drop_table("waitlist_places")
    with op.batch_alter_table("batches") as batch:
        batch.drop_constraint(op.f("ck_batches_reserved_only_while_waiting"), type_="check")
        batch.drop_constraint(op.f("ck_batches_waiting_not_negative"), type_="check")
        batch.drop_constraint(op.f("ck_batches_reserved_not_negative"), type_="check")
        batch.drop_constraint(op.f("ck_batches_no_oversell"), type_="check")
        batch.create_check_constraint(op.f("ck_batches_no_oversell"), "sold + held <= edition_size")
        batch.drop_column("waiting")
        batch.drop_column("reserved")

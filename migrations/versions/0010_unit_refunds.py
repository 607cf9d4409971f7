"""unit_refunds: some units of a paid order refunded; the units keep their serials, retired

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 07:00:00
"""

import sqlalchemy as sa
from alembic import op


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "unit_refunds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("refund_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_unit_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_unit_refunds_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unit_refunds")),
    )
    with op.batch_alter_table("unit_refunds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_unit_refunds_order_id"), ["order_id"], unique=False)
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("unit_refund_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_units_unit_refund_id"), ["unit_refund_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_units_unit_refund_id_unit_refunds"),
            "unit_refunds",
            ["unit_refund_id"],
            ["id"],
        )


def downgrade():
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_units_unit_refund_id_unit_refunds"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_units_unit_refund_id"))
        batch_op.drop_column("unit_refund_id")
        batch_op.drop_column("refunded_at")
    with op.batch_alter_table("unit_refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unit_refunds_order_id"))
    op.drop_table("unit_refunds")

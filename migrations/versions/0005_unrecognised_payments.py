"""unrecognised_payments: paid Checkout Sessions the shop did not create

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:10:00

A completed session that no order of ours carries (another integration on the same Stripe
account, a Payment Link, a staging copy on the same keys) used to be refunded as a stray. It is
someone else's money: the shop now records it here for the operator and leaves it alone.
"""

import sqlalchemy as sa
from alembic import op


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "unrecognised_payments",
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("amount_total", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("client_reference_id", sa.String(length=255), nullable=True),
        sa.Column("metadata_order", sa.String(length=255), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_unrecognised_payments")),
    )


def downgrade():
    op.drop_table("unrecognised_payments")

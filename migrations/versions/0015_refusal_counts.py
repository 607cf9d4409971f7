"""refusal_counts: refused buy attempts per batch and reason, for the report after a drop

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 12:00:00

Most of a drop's crowd is refused (sold out, over the limit, not live yet …). The report after a
drop shows how many, by reason, without a database write per refusal: each is counted in Redis
(or the process's memory) and the worker adds the counts here in bulk (shop/refusal_counts.py).
"""

import sqlalchemy as sa
from alembic import op


revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "refusal_counts",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("count >= 0", name=op.f("ck_refusal_counts_count_not_negative")),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_refusal_counts_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("batch_id", "reason", name=op.f("pk_refusal_counts")),
    )


def downgrade():
    op.drop_table("refusal_counts")

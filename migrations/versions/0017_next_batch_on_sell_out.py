"""batches.follows_batch_id: the next batch goes on sale when the one before sells out

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 09:00:00

A maker may line up Batch No. 8 behind No. 7 in the same drop: No. 8 sells only while No. 7 has
nothing left to sell, decided inside the hold statement (shop/holds.py, ON_SALE), so no job has
to switch it on.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("follows_batch_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_batches_follows_batch_id_batches"), "batches", ["follows_batch_id"], ["id"]
        )


def downgrade():
    with op.batch_alter_table("batches") as batch:
        batch.drop_constraint(op.f("fk_batches_follows_batch_id_batches"), type_="foreignkey")
        batch.drop_column("follows_batch_id")

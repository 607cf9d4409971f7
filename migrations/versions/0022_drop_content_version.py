"""drops.content_version: what a drop page shows changed, for the shared page cache

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 09:10:00

The public part of a drop page is rendered once per change and shared by every app process
(shop/page_cache.py). This counter is the change: every maker edit to the drop, its batches,
their products or images (and the operator's suspension) bumps it in the edit's own transaction.
"""

import sqlalchemy as sa
from alembic import op


revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("drops") as batch:
        batch.add_column(
            sa.Column("content_version", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade():
    with op.batch_alter_table("drops") as batch:
        batch.drop_column("content_version")

"""orders.kind: a hold is a crowd hold, a draw win or a waitlist offer

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 09:00:00

A draw win and a waitlist offer are the same thing in the inventory as a crowd hold — units held
for one customer until a deadline (``inventory.hold_for``) — so every invariant covers them; the
order only records which kind it is. Existing orders are crowd holds.
"""

import sqlalchemy as sa
from alembic import op


revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("orders") as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="crowd", nullable=False)
        )
        batch_op.create_check_constraint("kind_known", "kind IN ('crowd', 'draw', 'waitlist')")


def downgrade():
    with op.batch_alter_table("orders") as batch_op:
        batch_op.drop_constraint("kind_known", type_="check")
        batch_op.drop_column("kind")

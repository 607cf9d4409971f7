"""drops.waiting_room: how the drop's waiting room behaves (automatic, on, off)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 09:20:00

A maker chooses per drop: ``auto`` (the default: the room opens by itself when signed-in
arrivals exceed ``SHOP_ROOM_AUTO_PER_SECOND``), ``on`` (everyone waits their turn while the
drop is live) or ``off``. The line itself lives in Redis (shop/waiting_room.py), not here.
"""

import sqlalchemy as sa
from alembic import op


revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("drops") as batch:
        batch.add_column(
            sa.Column("waiting_room", sa.String(length=8), nullable=False, server_default="auto")
        )
        batch.create_check_constraint(
            "waiting_room_known", "waiting_room IN ('auto', 'on', 'off')"
        )


def downgrade():
    with op.batch_alter_table("drops") as batch:
        batch.drop_constraint("ck_drops_waiting_room_known", type_="check")
        batch.drop_column("waiting_room")

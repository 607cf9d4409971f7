"""held_by_account, held_by_network, orders.client_net, ix_orders_lapsed: hoarding made costly

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 12:00:00

A handful of accounts from one address could hold a large share of a drop, let the holds lapse
and take them again. The hold now caps what one account and one client network hold unpaid
across a drop's batches — counted in one row each, kept in step with held orders, so racing
holds on different batches meet on that row (and its CHECK) — and makes an account whose holds
keep lapsing wait (ix_orders_lapsed reads its recent lapses). Orders keep the keyed hash of the
client's network they were held from (never the address). Holds running at upgrade time are
counted for their accounts; their network is unknown, so they count for none.
"""

import sqlalchemy as sa
from alembic import op


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_net", sa.String(length=32), nullable=True))
        batch_op.create_index(
            "ix_orders_lapsed",
            ["customer_id", "released_at"],
            unique=False,
            sqlite_where=sa.text("state = 'expired'"),
            postgresql_where=sa.text("state = 'expired'"),
        )
    op.create_table(
        "held_by_account",
        sa.Column("drop_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("cap", sa.Integer(), nullable=False),
        sa.CheckConstraint("units >= 0", name=op.f("ck_held_by_account_units_not_negative")),
        sa.CheckConstraint("units <= cap", name=op.f("ck_held_by_account_units_within_cap")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["users.id"], name=op.f("fk_held_by_account_customer_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["drop_id"], ["drops.id"], name=op.f("fk_held_by_account_drop_id_drops")
        ),
        sa.PrimaryKeyConstraint("drop_id", "customer_id", name=op.f("pk_held_by_account")),
    )
    op.create_table(
        "held_by_network",
        sa.Column("drop_id", sa.Integer(), nullable=False),
        sa.Column("network", sa.String(length=32), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("cap", sa.Integer(), nullable=False),
        sa.CheckConstraint("units >= 0", name=op.f("ck_held_by_network_units_not_negative")),
        sa.CheckConstraint("units <= cap", name=op.f("ck_held_by_network_units_within_cap")),
        sa.ForeignKeyConstraint(
            ["drop_id"], ["drops.id"], name=op.f("fk_held_by_network_drop_id_drops")
        ),
        sa.PrimaryKeyConstraint("drop_id", "network", name=op.f("pk_held_by_network")),
    )
    op.execute(
        "INSERT INTO held_by_account (drop_id, customer_id, units, cap)"
        " SELECT b.drop_id, o.customer_id, SUM(o.quantity), SUM(o.quantity)"
        " FROM orders o JOIN batches b ON b.id = o.batch_id"
        " WHERE o.state = 'held' AND b.drop_id IS NOT NULL"
        " GROUP BY b.drop_id, o.customer_id"
    )


def downgrade():
    op.drop_table("held_by_network")
    op.drop_table("held_by_account")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_orders_lapsed",
            sqlite_where=sa.text("state = 'expired'"),
            postgresql_where=sa.text("state = 'expired'"),
        )
        batch_op.drop_column("client_net")

"""orders.amount BIGINT with a BIGINT check; batches.price at most 99,999,999 minor units

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:00:00

price × quantity of a dear batch could pass PostgreSQL's INTEGER (2**31 - 1) and turn a buy
into a 500. Amounts are now BIGINT and the CHECK that ties them to price × quantity computes in
BIGINT too; a batch's price is capped at Stripe's eight-digit maximum (money.MAX_PRICE), which
no existing batch could have exceeded and still been sold.
"""
import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint('amount_matches', type_='check')
        batch_op.alter_column(
            'amount', existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
        )
        batch_op.create_check_constraint(
            'amount_matches', 'amount = CAST(unit_price AS BIGINT) * quantity'
        )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_check_constraint('price_at_most_max', 'price <= 99999999')


def downgrade():
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_constraint('price_at_most_max', type_='check')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint('amount_matches', type_='check')
        batch_op.alter_column(
            'amount', existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
        )
        batch_op.create_check_constraint('amount_matches', 'amount = unit_price * quantity')

"""orders: one index on (customer_id, batch_id) instead of customer_id alone

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 07:00:00

The same number of indexes to maintain per order; "this customer's orders on these batches"
(a drop page's running holds) no longer reads all of the customer's other orders.
"""
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_customer_id_batch_id', ['customer_id', 'batch_id'], unique=False)
        batch_op.drop_index('ix_orders_customer_id')


def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_customer_id', ['customer_id'], unique=False)
        batch_op.drop_index('ix_orders_customer_id_batch_id')

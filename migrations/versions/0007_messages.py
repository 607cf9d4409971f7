"""messages: the outbox, drop subscriptions, verified email addresses

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 18:00:00

Messages are rows written with the event that causes them and sent by the worker. Accounts that
existed before get no verified date: with SHOP_REQUIRE_VERIFIED_EMAIL on, their owners verify
once (a link from their account page) before their next purchase.
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('drop_subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('drop_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unsubscribed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['drop_id'], ['drops.id'], name=op.f('fk_drop_subscriptions_drop_id_drops')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_drop_subscriptions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drop_subscriptions')),
    sa.UniqueConstraint('drop_id', 'email', name=op.f('uq_drop_subscriptions_drop_id_email')),
    sa.UniqueConstraint('token', name=op.f('uq_drop_subscriptions_token'))
    )
    with op.batch_alter_table('drop_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_drop_subscriptions_drop_id'), ['drop_id'], unique=False)

    op.create_table('messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('recipient', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('text_body', sa.Text(), nullable=False),
    sa.Column('html_body', sa.Text(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=True),
    sa.Column('dedupe_key', sa.String(length=160), nullable=True),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('pending', 'sent', 'failed')", name=op.f('ck_messages_state_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_messages_attempts_not_negative')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_messages_order_id_orders')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_messages_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_messages_dedupe_key'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_order_id'), ['order_id'], unique=False)
        batch_op.create_index('ix_messages_state_available_at', ['state', 'available_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('drops', schema=None) as batch_op:
        batch_op.add_column(sa.Column('live_notified_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_verified_at', sa.DateTime(timezone=True), nullable=True))



def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('email_verified_at')

    with op.batch_alter_table('drops', schema=None) as batch_op:
        batch_op.drop_column('live_notified_at')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_user_id'))
        batch_op.drop_index('ix_messages_state_available_at')
        batch_op.drop_index(batch_op.f('ix_messages_order_id'))

    op.drop_table('messages')
    with op.batch_alter_table('drop_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_drop_subscriptions_drop_id'))

    op.drop_table('drop_subscriptions')

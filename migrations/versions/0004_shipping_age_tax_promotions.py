"""shipping rates per zone, ship-to countries, age limits, tax mode, promotion codes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 18:30:00

A distillery needs to ship a 21+ batch only where it may go, at a rate per zone, with tax
computed by Stripe and promotion codes allowed per drop. Existing batches ship wherever the
shop does (empty ships_to), have no age limit and no tax; existing orders record no shipping.
"""
import sqlalchemy as sa
from alembic import op



revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'shipping_rates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('maker_id', sa.Integer(), nullable=False),
        sa.Column('batch_id', sa.Integer(), nullable=True),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('countries', sa.Text(), nullable=False),
        sa.Column('amount', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('free_above', sa.Integer(), nullable=True),
        sa.Column('min_days', sa.Integer(), nullable=True),
        sa.Column('max_days', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('amount >= 0', name=op.f('ck_shipping_rates_amount_not_negative')),
        sa.CheckConstraint(
            'free_above IS NULL OR free_above > 0',
            name=op.f('ck_shipping_rates_free_above_positive'),
        ),
        sa.CheckConstraint(
            'min_days IS NULL OR max_days IS NULL OR min_days <= max_days',
            name=op.f('ck_shipping_rates_days_ordered'),
        ),
        sa.ForeignKeyConstraint(
            ['batch_id'], ['batches.id'], name=op.f('fk_shipping_rates_batch_id_batches')
        ),
        sa.ForeignKeyConstraint(
            ['maker_id'], ['users.id'], name=op.f('fk_shipping_rates_maker_id_users')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_shipping_rates')),
    )
    with op.batch_alter_table('shipping_rates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shipping_rates_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_shipping_rates_maker_id'), ['maker_id'], unique=False)

    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('ships_to', sa.String(length=400), nullable=False, server_default='')
        )
        batch_op.add_column(sa.Column('minimum_age', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('tax_code', sa.String(length=32), nullable=True))
        batch_op.create_check_constraint(
            'minimum_age_sane', 'minimum_age IS NULL OR (minimum_age >= 1 AND minimum_age <= 99)'
        )

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('tax_mode', sa.String(length=16), nullable=False, server_default='off')
        )
        batch_op.create_check_constraint(
            'tax_mode_known', "tax_mode IN ('off', 'exclusive', 'inclusive')"
        )

    with op.batch_alter_table('drops', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'allow_promotion_codes', sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ship_country', sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column('birth_date', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('shipping_rate_name', sa.String(length=80), nullable=True))
        batch_op.add_column(
            sa.Column('shipping_amount', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(
            sa.Column('tax_amount', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(
            sa.Column('discount_amount', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(sa.Column('amount_total', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('promotion_code', sa.String(length=64), nullable=True))
        batch_op.create_check_constraint('shipping_not_negative', 'shipping_amount >= 0')


def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint('shipping_not_negative', type_='check')
        for column in (
            'promotion_code', 'amount_total', 'discount_amount', 'tax_amount',
            'shipping_amount', 'shipping_rate_name', 'birth_date', 'ship_country',
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table('drops', schema=None) as batch_op:
        batch_op.drop_column('allow_promotion_codes')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('tax_mode_known', type_='check')
        batch_op.drop_column('tax_mode')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_constraint('minimum_age_sane', type_='check')
        batch_op.drop_column('tax_code')
        batch_op.drop_column('minimum_age')
        batch_op.drop_column('ships_to')
    op.drop_table('shipping_rates')

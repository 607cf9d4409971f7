"""batch_images.slot: the per-batch picture cap kept by a UNIQUE constraint

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 23:00:00

The cap of twelve pictures a batch was a count read before the insert, so parallel uploads
could all pass it. Now every picture takes one of the batch's slots 0..11, UNIQUE per batch:
there are only twelve. Existing pictures get slots in their shown order; a batch that already
has more than twelve (only that race could make one) keeps them all, on slots past the cap,
and takes no new picture until it is under the cap again.
"""
import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('batch_images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('slot', sa.SmallInteger(), nullable=True))
    op.execute(
        "UPDATE batch_images SET slot = (SELECT count(*) FROM batch_images AS earlier"
        " WHERE earlier.batch_id = batch_images.batch_id"
        " AND (earlier.position < batch_images.position"
        " OR (earlier.position = batch_images.position AND earlier.id < batch_images.id)))"
    )
    with op.batch_alter_table('batch_images', schema=None) as batch_op:
        batch_op.alter_column('slot', existing_type=sa.SmallInteger(), nullable=False)
        batch_op.create_unique_constraint(
            batch_op.f('uq_batch_images_batch_id_slot'), ['batch_id', 'slot']
        )
        batch_op.create_check_constraint('slot_not_negative', 'slot >= 0')


def downgrade():
    with op.batch_alter_table('batch_images', schema=None) as batch_op:
        batch_op.drop_constraint('slot_not_negative', type_='check')
        batch_op.drop_constraint(batch_op.f('uq_batch_images_batch_id_slot'), type_='unique')
        batch_op.drop_column('slot')

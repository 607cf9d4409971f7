"""batches: the unit's name for one ("bottle") beside the plural ("bottles")

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 14:00:00

Pages used to make the singular by dropping the plural's last "s", which reads "1 scarve" for
"scarves". Existing batches get that old guess as their starting value, so no page changes
until a maker corrects it in the batch form.
"""
import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('unit_singular', sa.String(length=32), nullable=False, server_default='unit')
        )
    op.execute(
        "UPDATE batches SET unit_singular = CASE"
        " WHEN unit_label LIKE '%s' AND length(unit_label) > 1"
        " THEN substr(unit_label, 1, length(unit_label) - 1)"
        " ELSE unit_label END"
    )


def downgrade():
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_column('unit_singular')

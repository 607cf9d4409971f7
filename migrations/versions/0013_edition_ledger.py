"""edition_changes and ledger_checks: the public edition ledger and its reconciliation

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 08:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "edition_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("from_size", sa.Integer(), nullable=False),
        sa.Column("to_size", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "from_size >= 1 AND to_size >= 1", name=op.f("ck_edition_changes_sizes_positive")
        ),
        sa.CheckConstraint("from_size <> to_size", name=op.f("ck_edition_changes_a_change")),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_edition_changes_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edition_changes")),
    )
    with op.batch_alter_table("edition_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_edition_changes_batch_id"), ["batch_id"], unique=False)
    op.create_table(
        "ledger_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("mismatches", sa.Integer(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_checks")),
    )
    with op.batch_alter_table("ledger_checks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_checks_checked_at"), ["checked_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("ledger_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_checks_checked_at"))
    op.drop_table("ledger_checks")
    with op.batch_alter_table("edition_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_edition_changes_batch_id"))
    op.drop_table("edition_changes")

"""users.mailbox: one account per mailbox

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 13:00:00

Plus-addressing ("ann+1@…", "ann+2@…") and Gmail's dots let one inbox confirm any number of
accounts, multiplying the per-customer limits and the hoarding caps. Each account now records
the mailbox its address reaches (the +tag dropped, and at Gmail the dots), UNIQUE. Existing
accounts that already share a mailbox keep working: the oldest gets the mailbox, the others
NULL (they can still log in and buy; no new account can join them).

The rule is copied here as it stood (shop/emails.py ``mailbox``), so this migration does not
change if the rule does.
"""
import sqlalchemy as sa
from alembic import op


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_DOTLESS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def _mailbox(address):
    local, _, domain = address.rpartition("@")
    base = local.split("+", 1)[0] or local
    if domain in _DOTLESS:
        base, domain = base.replace(".", "") or base, _DOTLESS[domain]
    return f"{base}@{domain}"


def upgrade():
    op.add_column("users", sa.Column("mailbox", sa.String(length=254), nullable=True))
    connection = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("email", sa.String), sa.column("mailbox", sa.String))
    taken = set()
    for user_id, email in connection.execute(sa.select(users.c.id, users.c.email).order_by(users.c.id)):
        mailbox = _mailbox(email)
        if mailbox in taken:
            continue
        taken.add(mailbox)
        connection.execute(users.update().where(users.c.id == user_id).values(mailbox=mailbox))
    op.create_index("uq_users_mailbox", "users", ["mailbox"], unique=True)


def downgrade():
    op.drop_index("uq_users_mailbox", table_name="users")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("mailbox")

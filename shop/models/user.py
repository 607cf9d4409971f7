"""People with accounts: customers and makers."""

from __future__ import annotations

import secrets
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from shop import clock, emails
from shop.extensions import db
from shop.models.types import UTCDateTime

CUSTOMER = "customer"
MAKER = "maker"
TAX_OFF = "off"
TAX_EXCLUSIVE = "exclusive"
TAX_INCLUSIVE = "inclusive"
TAX_MODES = (TAX_OFF, TAX_EXCLUSIVE, TAX_INCLUSIVE)


def new_session_token() -> str:
    return secrets.token_urlsafe(16)


def mailbox_of_email(context) -> str:
    """The column default: the mailbox of the address being inserted (``emails.mailbox``)."""
    return emails.mailbox(context.get_current_parameters()["email"])


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("email = lower(email)", name="email_lower"),
        CheckConstraint("role IN ('customer', 'maker')", name="role_known"),
        CheckConstraint("tax_mode IN ('off', 'exclusive', 'inclusive')", name="tax_mode_known"),
        # One account per mailbox (SECURITY.md): an index, so adding it rebuilt no table.
        Index("uq_users_mailbox", "mailbox", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    # The inbox the address reaches, for uniqueness only (never mailed): "ann+1@x" is "ann@x".
    # NULL for an account that shared its mailbox with an older one before the rule.
    mailbox: Mapped[str | None] = mapped_column(String(254), default=mailbox_of_email)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(16), default=CUSTOMER)
    is_admin: Mapped[bool] = mapped_column(default=False)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # A maker's taxes: off, or Stripe Tax on prices that exclude it (added at checkout) or
    # include it (shown inside the price).
    tax_mode: Mapped[str] = mapped_column(String(16), default=TAX_OFF)
    # Rotated at logout and password change: every cookie carrying the old one stops working.
    session_token: Mapped[str] = mapped_column(String(64), default=new_session_token)
    # Set when the owner follows the link in "Verify your email"; None until then.
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by the operator: the maker's drops stop selling and their console is closed to them;
    # their customers' orders are untouched. None for every account in good standing.
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    @property
    def is_maker(self) -> bool:
        return self.role == MAKER

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    @property
    def first_name(self) -> str:
        return (self.display_name or "").split(" ")[0]

    def get_id(self) -> str:
        return f"{self.id}:{self.session_token}"

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"

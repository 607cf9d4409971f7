"""Verified email addresses: the link sent after registration, resending it, following it.

With SHOP_REQUIRE_VERIFIED_EMAIL on, buying needs a verified address, so every account a bot
makes costs it a real mailbox that receives our link.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update

from shop import messages, tokens
from shop.errors import InvalidState, LinkInvalid, TooSoon
from shop.extensions import db
from shop.models import User

PURPOSE = "verify-email"
LINK_LASTS = timedelta(days=3)
RESEND_EVERY = timedelta(minutes=1)
RESENDS_PER_DAY = 5
EXPIRED = "This confirmation link has expired (links last three days). Send yourself a new one."


def link_token(user: User) -> str:
    return tokens.sign(PURPOSE, {"u": user.id, "e": user.email})


def send_link(user: User, *, now: datetime) -> None:
    """Add "Verify your email" to the caller's transaction (registration commits it)."""
    messages.verify_email(user, token=link_token(user))


def resend(user: User, *, now: datetime) -> None:
    """Another link, at most one a minute and five a day per account."""
    if user.email_verified_at is not None:
        raise InvalidState("Your email address is already confirmed.")
    if messages.sent_since(user, messages.VERIFY_EMAIL, now - RESEND_EVERY) > 0:
        raise TooSoon()
    if messages.sent_since(user, messages.VERIFY_EMAIL, now - timedelta(days=1)) >= RESENDS_PER_DAY:
        raise TooSoon("That's enough confirmation emails for today. Try again tomorrow.")
    send_link(user, now=now)


def verify(token: str, *, now: datetime) -> User:
    """The account the link confirms, marked verified (once; following it again is fine).
    LinkInvalid for a forged link or one for an address the account no longer has."""
    payload = tokens.read(PURPOSE, token, max_age=LINK_LASTS, now=now, expired=EXPIRED)
    user = db.session.get(User, payload.get("u")) if isinstance(payload.get("u"), int) else None
    if user is None or user.email != payload.get("e"):
        raise LinkInvalid("This confirmation link isn't valid. Nothing was changed.")
    db.session.execute(
        update(User)
        .where(User.id == user.id, User.email_verified_at.is_(None))
        .values(email_verified_at=now)
    )
    db.session.refresh(user)
    return user

"""Password reset by email: ask with an address, follow a signed link that works once and for
an hour, choose a new password; every other session ends.

The answer to "send me a link" is the same whether or not an account has the address, and a
link is single-use without a table of used tokens: it carries a fingerprint of the password
hash it was made for, so once the password changes (by this link or any other way) the link
is dead, and the change itself is a compare-and-set on that hash, so two tabs using one link
at once change the password once.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import update

from shop import claims, messages, passwords, tokens, users
from shop.errors import LinkInvalid
from shop.extensions import db
from shop.models import User
from shop.models.user import new_session_token

PURPOSE = "reset-password"
LINK_LASTS = timedelta(hours=1)
# Per address, silently (the answer never changes): no inbox gets flooded with links.
LINKS_PER_HOUR = 3
EXPIRED = "This reset link has expired (links last an hour). Ask for a new one below."
USED = (
    "This reset link was already used, or the password was changed since it was sent. "
    "Ask for a new one below."
)
FORGED = "This reset link isn't valid. Ask for a new one below."


def _fingerprint(password_hash: str) -> str:
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, password_hash.encode(), hashlib.sha256).hexdigest()[:24]


def request_link(raw_email: str, *, now: datetime) -> None:
    """Email a reset link if an account has this address; nothing otherwise. InvalidInput only
    for an address that is malformed (which says nothing about accounts)."""
    email = users.normalise_email(raw_email)
    user = users.find_by_email(email)
    if user is None:
        return
    if messages.sent_since(user, messages.RESET_LINK, now - timedelta(hours=1)) >= (LINKS_PER_HOUR):
        return
    token = tokens.sign(PURPOSE, {"u": user.id, "p": _fingerprint(user.password_hash)})
    messages.password_reset(user, token=token)


def account_for(token: str, *, now: datetime) -> User:
    """The account a live link resets; LinkInvalid saying why otherwise."""
    payload = tokens.read(PURPOSE, token, max_age=LINK_LASTS, now=now, expired=EXPIRED)
    user_id = payload.get("u")
    user = db.session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None:
        raise LinkInvalid(FORGED)
    if not hmac.compare_digest(str(payload.get("p", "")), _fingerprint(user.password_hash)):
        raise LinkInvalid(USED)
    return user


def reset(token: str, new_password: str, *, now: datetime) -> User:
    """Set the new password and end every session (the caller starts a fresh one)."""
    user = account_for(token, now=now)
    users.check_password_rules(new_password)
    changed = db.session.execute(
        update(User)
        .where(User.id == user.id, User.password_hash == user.password_hash)
        .values(
            password_hash=passwords.hash_password(new_password),
            session_token=new_session_token(),
            # Following the link proved the mailbox is theirs.
            email_verified_at=user.email_verified_at or now,
        )
    ).rowcount
    if changed != 1:
        db.session.rollback()
        raise LinkInvalid(USED)
    claims.changed(user.id)
    db.session.refresh(user)
    return user

"""People's accounts: registration, authentication, session revocation, profile settings.

No request in here; the views in ``shop/account/`` (customers) and ``shop/maker/`` call these.
"""

from __future__ import annotations

from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select

from shop import audit, database, emails, page_cache, passwords
from shop.errors import InvalidInput
from shop.extensions import db
from shop.models import User
from shop.models.user import CUSTOMER, MAKER, TAX_MODES, new_session_token


class LookAlikeEmail(InvalidInput):
    """An address that could pass for another one (see shop.emails)."""


def normalise_email(raw: str) -> str:
    """The canonical (NFKC, lower-cased) form of an address; InvalidInput when it is not one,
    LookAlikeEmail when it could pass for another."""
    try:
        info = validate_email(emails.nfkc((raw or "").strip()), check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidInput(f"That email address doesn't look right: {error}") from None
    email = info.normalized.lower()
    if emails.is_look_alike(email):
        raise LookAlikeEmail(emails.LOOK_ALIKE_MESSAGE)
    return email


def check_password_rules(password: str) -> None:
    if not password or not password.strip():
        raise InvalidInput("Choose a password.")
    if not passwords.MIN_LENGTH <= len(password) <= passwords.MAX_LENGTH:
        raise InvalidInput(
            f"Passwords are {passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters long."
        )


def find_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == email))


def register(email: str, password: str, *, display_name: str = "", role: str = CUSTOMER) -> User:
    """A new account; InvalidInput for a bad or taken email or a weak password."""
    if role not in (CUSTOMER, MAKER):
        raise InvalidInput("Unknown role.")
    email = normalise_email(email)
    check_password_rules(password)
    check_mailbox_free(email)
    user = User(
        email=email,
        mailbox=emails.mailbox(email),
        password_hash=passwords.hash_password(password),
        display_name=(display_name or "").strip()[:80] or email.split("@")[0],
        role=role,
    )
    db.session.add(user)
    database.flush_unique(TAKEN)  # the same mailbox registering twice at once
    return user


TAKEN = "An account with that email already exists. Try logging in."
SAME_MAILBOX = (
    "An account already uses that mailbox: addresses that differ only by a +tag (or, at Gmail, "
    "by dots) reach the same inbox, and a mailbox has one account. Log in with the address you "
    "signed up with, or reset its password."
)


def check_mailbox_free(email: str) -> None:
    """InvalidInput when an account has this address, or another address of its mailbox."""
    if find_by_email(email) is not None:
        raise InvalidInput(TAKEN)
    if db.session.scalar(select(User.id).where(User.mailbox == emails.mailbox(email))):
        raise InvalidInput(SAME_MAILBOX)


def authenticate(email: str, password: str) -> User | None:
    """The user for these credentials, or None; takes as long for unknown emails.

    Raises LookAlikeEmail (before any password work) for an address that could pass for
    another: that depends on the address alone, so it reveals nothing about accounts."""
    try:
        email = normalise_email(email)
    except LookAlikeEmail:
        raise
    except InvalidInput:
        email = ""
    user = find_by_email(email) if email else None
    matched = passwords.verify_password(user.password_hash if user else None, password or "")
    if user is None or not matched:
        return None
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    return user


def revoke_sessions(user: User) -> None:
    """Every session and remember-me cookie issued before now stops working."""
    user.session_token = new_session_token()


def change_password(user: User, current: str, new: str) -> None:
    if not passwords.verify_password(user.password_hash, current or ""):
        raise InvalidInput("Your current password is not right.")
    check_password_rules(new)
    user.password_hash = passwords.hash_password(new)
    revoke_sessions(user)


def update_settings(
    user: User,
    *,
    display_name: str,
    timezone: str,
    tax_mode: str | None = None,
    actor: audit.Actor,
) -> None:
    """A maker's shop settings; what changed goes on their audit trail."""
    if timezone not in available_timezones():
        raise InvalidInput("Choose a time zone from the list.")
    if tax_mode is not None and tax_mode not in TAX_MODES:
        raise InvalidInput("Choose how taxes are handled from the list.")
    name = (display_name or "").strip()
    if not name:
        raise InvalidInput("Tell customers your name or your workshop's name.")
    wanted = {
        "display name": name[:80],
        "time zone": timezone,
        "taxes": tax_mode if tax_mode is not None else user.tax_mode,
    }
    before = {"display name": user.display_name, "time zone": user.timezone, "taxes": user.tax_mode}
    user.display_name = wanted["display name"]
    user.timezone = timezone
    user.tax_mode = wanted["taxes"]
    changed = [
        f"{label} {before[label]} → {value}"
        for label, value in wanted.items()
        if before[label] != value
    ]
    if changed:
        audit.record("settings.edited", actor=actor, maker=user, detail="; ".join(changed))
    db.session.flush()
    if before["display name"] != user.display_name:  # shown on the maker's drop pages
        page_cache.content_changed(maker_ids=[user.id])

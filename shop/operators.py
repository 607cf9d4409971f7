"""The operator's work: inviting makers, suspending and reinstating them, seeing every drop.

The operator is an account with ``is_admin`` (``flask --app wsgi shop create-admin``). Makers
join through an invitation: a single-use link, valid for :data:`INVITATION_LIFETIME`, of which
the database keeps only the SHA-256, so the link is the only way in and works exactly once
(:func:`accept` takes it with a compare-and-set). Suspending a maker stops every one of their
drops from selling at once (``drops.suspended``, read by the hold's liveness rule), ends their
sessions and closes their console; their customers' orders, paid or held, are not touched.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from shop import audit, mail, messages, page_cache, users
from shop.errors import InvalidInput, InvalidState, LinkInvalid, NotFound
from shop.extensions import db
from shop.models import Drop, Invitation, User
from shop.models.invitation import token_digest
from shop.models.user import MAKER

INVITATION_LIFETIME = timedelta(days=7)


@dataclass(frozen=True)
class MakerRow:
    """One maker as the operator's overview lists them."""

    maker: User
    drops: int
    live_drops: int


def makers(now: datetime) -> list[MakerRow]:
    """Every maker, with how many drops they have and how many are selling now."""
    drops_of: dict[int, list[Drop]] = {}
    for drop in db.session.scalars(select(Drop)):
        drops_of.setdefault(drop.maker_id, []).append(drop)
    found = db.session.scalars(
        select(User).where(User.role == MAKER).order_by(func.lower(User.display_name), User.id)
    )
    return [
        MakerRow(
            user,
            len(drops_of.get(user.id, [])),
            sum(1 for drop in drops_of.get(user.id, []) if drop.in_window(now)),
        )
        for user in found
    ]


def all_drops() -> list[Drop]:
    """Every maker's drops, newest first."""
    return list(db.session.scalars(select(Drop).order_by(Drop.created_at.desc(), Drop.id.desc())))


def maker(maker_id: int) -> User:
    found = db.session.get(User, maker_id)
    if found is None or found.role != MAKER:
        raise NotFound("No maker has that id.")
    return found


def open_invitations(now: datetime) -> list[Invitation]:
    return list(
        db.session.scalars(
            select(Invitation)
            .where(
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
                Invitation.expires_at > now,
            )
            .order_by(Invitation.created_at.desc())
        )
    )


def invite(operator: User, email: str, display_name: str, *, now: datetime) -> Invitation:
    """Email a single-use link that makes ``email`` a maker. An earlier open invitation to the
    same address is withdrawn (only the newest link works)."""
    address = users.normalise_email(email)
    users.check_mailbox_free(address)
    name = (display_name or "").strip()
    if len(name) > 80:
        raise InvalidInput("A maker's name is at most 80 characters.")
    db.session.execute(
        update(Invitation)
        .where(
            Invitation.email == address,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    token = secrets.token_urlsafe(32)
    invitation = Invitation(
        email=address,
        display_name=name,
        token_hash=token_digest(token),
        invited_by_id=operator.id,
        created_at=now,
        expires_at=now + INVITATION_LIFETIME,
    )
    db.session.add(invitation)
    db.session.flush()
    messages.maker_invitation(
        invitation, inviter=operator, link=mail.link("account.accept_invitation", token=token)
    )
    audit.record("maker invited", actor=operator, detail=address)
    return invitation


def invitation_for(token: str, *, now: datetime) -> Invitation:
    """The open invitation behind a link; LinkInvalid (saying why) for any other."""
    found = db.session.scalar(
        select(Invitation).where(Invitation.token_hash == token_digest(token or ""))
    )
    if found is None:
        raise LinkInvalid("This invitation link isn't valid. Check that it was copied whole.")
    if found.accepted_at is not None:
        raise LinkInvalid("This invitation has already been used. Log in with your password.")
    if found.revoked_at is not None:
        raise LinkInvalid("This invitation was withdrawn. Ask the shop for a new one.")
    if found.expires_at <= now:
        raise LinkInvalid("This invitation has expired. Ask the shop for a new one.")
    return found


def accept(token: str, *, password: str, display_name: str, now: datetime) -> User:
    """Use an invitation: the maker account, with the password they chose. The link is taken
    with a compare-and-set, so two submissions of one link make one account."""
    invitation = invitation_for(token, now=now)
    taken = db.session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
        .values(accepted_at=now)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        raise LinkInvalid("This invitation has already been used. Log in with your password.")
    user = users.register(
        invitation.email,
        password,
        display_name=display_name or invitation.display_name,
        role=MAKER,
    )
    user.email_verified_at = now  # the link reached this mailbox
    db.session.execute(
        update(Invitation).where(Invitation.id == invitation.id).values(user_id=user.id)
    )
    audit.record("maker joined", actor=user, detail=user.email)
    return user


def revoke(operator: User, invitation_id: int, *, now: datetime) -> Invitation:
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None:
        raise NotFound("No invitation has that id.")
    if not invitation.is_open(now):
        raise InvalidState("That invitation is no longer open.")
    invitation.revoked_at = now
    audit.record("invitation withdrawn", actor=operator, detail=invitation.email)
    return invitation


def suspend(operator: User, target: User, *, now: datetime, reason: str) -> None:
    """Stop the maker selling: every drop of theirs stops at once, their sessions end."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the maker is suspended: they and the audit trail will read it.")
    if target.suspended_at is not None:
        raise InvalidState("This maker is already suspended.")
    target.suspended_at = now
    db.session.execute(update(Drop).where(Drop.maker_id == target.id).values(suspended=True))
    page_cache.content_changed(maker_ids=[target.id])
    users.revoke_sessions(target)
    audit.record("maker suspended", actor=operator, detail=f"{target.email}: {reason[:500]}")


def reinstate(operator: User, target: User) -> None:
    """The maker's drops sell again as their own states and windows say."""
    if target.suspended_at is None:
        raise InvalidState("This maker is not suspended.")
    target.suspended_at = None
    db.session.execute(update(Drop).where(Drop.maker_id == target.id).values(suspended=False))
    page_cache.content_changed(maker_ids=[target.id])
    audit.record("maker reinstated", actor=operator, detail=target.email)

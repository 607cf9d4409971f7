""" "Notify me" on an upcoming drop, and "The drop is live" when it opens.

A signed-in customer subscribes with one click (the account's address). A visitor gives an
address and confirms it from an email first (double opt-in), so nobody can sign up someone
else. When a drop becomes live the worker writes one message per confirmed subscriber, once per
drop (a compare-and-set on ``drops.live_notified_at``), spread over time in batches of
SHOP_NOTIFY_BATCH_SIZE every SHOP_NOTIFY_BATCH_SECONDS, each with RFC 8058 one-click
unsubscribe. Every link carries the subscription's own random token, so a link can only ever
unsubscribe the address it was sent to.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from shop import messages, users
from shop.errors import InvalidState, LinkInvalid
from shop.extensions import db
from shop.models import Drop, DropSubscription, Message, User
from shop.models.drop import OPEN, SCHEDULED

_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")
NOT_FOUND = "This link isn't valid (it may be from an older email). Nothing was changed."


def _subscription(drop: Drop, email: str) -> DropSubscription | None:
    return db.session.scalar(
        select(DropSubscription).where(
            DropSubscription.drop_id == drop.id, DropSubscription.email == email
        )
    )


def _upcoming(drop: Drop, now: datetime) -> None:
    if drop.phase(now) != "upcoming":
        raise InvalidState("This drop isn't upcoming any more, so there's nothing to wait for.")


def is_subscribed(drop: Drop, user: User) -> bool:
    found = _subscription(drop, user.email)
    return found is not None and found.confirmed_at is not None and found.unsubscribed_at is None


def subscribe_customer(drop: Drop, user: User, *, now: datetime) -> DropSubscription:
    """One click: the account's address, confirmed at once (the customer asked for it)."""
    _upcoming(drop, now)
    found = _subscription(drop, user.email)
    if found is None:
        found = DropSubscription(drop_id=drop.id, email=user.email, user_id=user.id)
        db.session.add(found)
    found.confirmed_at = found.confirmed_at or now
    found.unsubscribed_at = None
    db.session.flush()
    return found


def subscribe_visitor(drop: Drop, raw_email: str, *, now: datetime) -> None:
    """Ask the address to confirm (once per drop and address). The answer is the same whether
    the address was new, pending or confirmed already; InvalidInput for a malformed one."""
    _upcoming(drop, now)
    email = users.normalise_email(raw_email)
    found = _subscription(drop, email)
    if found is None:
        found = DropSubscription(drop_id=drop.id, email=email)
        db.session.add(found)
        db.session.flush()
    if found.confirmed_at is None:
        messages.confirm_subscription(found, drop)  # once per subscription (its dedupe key)


def _by_token(token: str) -> DropSubscription:
    found = (
        db.session.scalar(select(DropSubscription).where(DropSubscription.token == token))
        if _TOKEN.fullmatch(token or "")
        else None
    )
    if found is None:
        raise LinkInvalid(NOT_FOUND)
    return found


def confirm(token: str, *, now: datetime) -> DropSubscription:
    found = _by_token(token)
    if found.unsubscribed_at is None:
        found.confirmed_at = found.confirmed_at or now
    return found


def subscription(token: str) -> DropSubscription:
    return _by_token(token)


def unsubscribe(token: str, *, now: datetime) -> DropSubscription:
    """Stop this address hearing about this drop; drop-live messages not sent yet are dropped."""
    found = _by_token(token)
    found.unsubscribed_at = found.unsubscribed_at or now
    db.session.execute(
        delete(Message).where(
            Message.state == "pending",
            Message.dedupe_key == live_message_key(found.drop_id, found.id),
        )
    )
    return found


def live_message_key(drop_id: int, subscription_id: int) -> str:
    return f"{messages.DROP_LIVE}:{drop_id}:{subscription_id}"


def notify_live_drops(now: datetime) -> int:
    """The worker's job: for each drop that went live and was not announced yet, claim it and
    write "The drop is live" for every confirmed subscriber, in one transaction. Returns how
    many messages were written."""
    config = current_app.config
    size = max(1, config["SHOP_NOTIFY_BATCH_SIZE"])
    every = timedelta(seconds=config["SHOP_NOTIFY_BATCH_SECONDS"])
    due = list(
        db.session.scalars(
            select(Drop.id)
            .where(Drop.state.in_((SCHEDULED, OPEN)), Drop.live_notified_at.is_(None))
            .where(Drop.opens_at <= now)
            .where((Drop.closes_at.is_(None)) | (Drop.closes_at > now))
        )
    )
    db.session.rollback()
    written = 0
    for drop_id in due:
        claimed = db.session.execute(
            update(Drop)
            .where(Drop.id == drop_id, Drop.live_notified_at.is_(None))
            .values(live_notified_at=now)
        ).rowcount
        if claimed != 1:  # another worker announced it
            db.session.rollback()
            continue
        drop = db.session.get(Drop, drop_id)
        assert drop is not None
        subscribers = db.session.scalars(
            select(DropSubscription)
            .where(DropSubscription.drop_id == drop_id)
            .where(DropSubscription.confirmed_at.is_not(None))
            .where(DropSubscription.unsubscribed_at.is_(None))
            .order_by(DropSubscription.id)
        )
        for position, subscriber in enumerate(subscribers):
            messages.drop_live(
                drop,
                subscriber,
                dedupe_key=live_message_key(drop_id, subscriber.id),
                available_at=now + every * (position // size),
            )
            written += 1
        db.session.commit()
    return written

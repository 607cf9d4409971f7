"""The transactional outbox: a message is a row added in the same transaction as its cause and
sent later by the worker, so no request ever waits for a mail server and no message is lost
when one is down.

Exactly-once as far as we can: a message is claimed with a short lease (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so several workers split the work and never take the same row), sent
with no transaction open, then marked sent by a compare-and-set on ``state = 'pending'``; once
that is recorded nothing sends it again. The one gap no outbox closes: a worker that dies after
the server accepted a message but before the row says so sends it again when the lease runs
out, with the same Message-ID, which mail clients use to fold duplicates.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shop import audit, database, mail
from shop.extensions import db
from shop.models import Message, Order, User
from shop.models.message import FAILED, PENDING, SENT

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=1)
CLAIM_LIMIT = 20  # per lease: small, so several workers share a queue
MAX_CLAIMS_PER_PASS = 50


def enqueue(
    kind: str,
    *,
    recipient: str,
    rendered: mail.Rendered,
    order: Order | None = None,
    user: User | None = None,
    dedupe_key: str | None = None,
    headers: dict[str, str] | None = None,
    available_at: datetime | None = None,
) -> bool:
    """Add a message to the caller's transaction (the caller commits it with its cause).

    With ``dedupe_key`` the same event written twice adds one message: INSERT … ON CONFLICT DO
    NOTHING, so a race on the key never fails the cause's transaction. True if added.
    """
    values = {
        "kind": kind,
        "recipient": recipient,
        "subject": rendered.subject,
        "text_body": rendered.text,
        "html_body": rendered.html,
        "headers": headers or None,
        "dedupe_key": dedupe_key,
        "order_id": order.id if order is not None else None,
        "user_id": user.id if user is not None else None,
        "state": PENDING,
        "attempts": 0,
    }
    if available_at is not None:
        values["available_at"] = available_at
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Message).values(**values)
    if dedupe_key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["dedupe_key"])
    return db.session.execute(statement.returning(Message.id)).first() is not None


# --- the worker's side ---------------------------------------------------------------------


@dataclass
class Delivery:
    """What one pass did. ``failed`` names messages that gave up in this pass."""

    sent: int = 0
    retrying: int = 0
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"sent: {self.sent}, retrying: {self.retrying}, failed: {len(self.failed)}"


def claim(now: datetime, *, limit: int = CLAIM_LIMIT) -> list[int]:
    """Lease up to ``limit`` due messages to this worker and commit the lease."""
    due = (
        select(Message.id)
        .where(Message.state == PENDING, Message.available_at <= now)
        .where((Message.lease_until.is_(None)) | (Message.lease_until <= now))
        .order_by(Message.available_at, Message.id)
        .limit(limit)
    )
    return database.lease(due, Message.lease_until, until=now + LEASE)


def deliver(
    now: datetime, *, transport: mail.Transport | None = None, limit: int = CLAIM_LIMIT
) -> Delivery:
    """One pass: lease and send due messages until none is left (or a pass's cap is reached)."""
    transport = transport or mail.transport()
    report = Delivery()
    for _ in range(MAX_CLAIMS_PER_PASS):
        claimed = claim(now, limit=limit)
        if not claimed:
            break
        _send_claimed(claimed, now=now, transport=transport, report=report)
    return report


def _send_claimed(
    claimed: list[int], *, now: datetime, transport: mail.Transport, report: Delivery
) -> None:
    for message_id in claimed:
        message = db.session.get(Message, message_id, populate_existing=True)
        if message is None or message.state != PENDING:
            db.session.rollback()
            continue
        email = mail.build(
            recipient=message.recipient,
            subject=message.subject,
            text=message.text_body,
            html=message.html_body,
            headers=message.headers,
            message_id=f"<outbox-{message.id}-{message.created_at:%Y%m%d%H%M%S}@"
            f"{mail.sender().domain}>",
        )
        description = f"#{message.id} {message.kind} to {message.recipient}"
        db.session.rollback()  # no transaction is open while the mail server is asked
        try:
            transport.send(email)
        except smtplib.SMTPResponseException as error:
            permanent = error.smtp_code >= 500
            _record_failure(message_id, now=now, error=_describe(error), permanent=permanent)
            _count_failure(report, message_id, description)
        except smtplib.SMTPRecipientsRefused as error:
            _record_failure(message_id, now=now, error=_describe(error), permanent=True)
            _count_failure(report, message_id, description)
        except (OSError, smtplib.SMTPException) as error:
            _record_failure(message_id, now=now, error=_describe(error), permanent=False)
            _count_failure(report, message_id, description)
        else:
            db.session.execute(
                update(Message)
                .where(Message.id == message_id, Message.state == PENDING)
                .values(
                    state=SENT,
                    sent_at=now,
                    attempts=Message.attempts + 1,
                    lease_until=None,
                    last_error=None,
                )
            )
            db.session.commit()
            report.sent += 1


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:500]


def backoff(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failure: 1, 2, 4 … minutes, at most an hour."""
    return min(FIRST_RETRY * 2 ** max(0, attempts - 1), LONGEST_WAIT)


def _record_failure(message_id: int, *, now: datetime, error: str, permanent: bool) -> None:
    message = db.session.get(Message, message_id, populate_existing=True)
    if message is None or message.state != PENDING:
        db.session.rollback()
        return
    attempts = message.attempts + 1
    give_up = permanent or attempts >= current_app.config["SHOP_MAIL_MAX_ATTEMPTS"]
    db.session.execute(
        update(Message)
        .where(Message.id == message_id, Message.state == PENDING)
        .values(
            state=FAILED if give_up else PENDING,
            attempts=attempts,
            available_at=now + backoff(attempts),
            lease_until=None,
            last_error=error,
        )
    )
    db.session.commit()
    log.warning("message %s attempt %s failed: %s", message_id, attempts, error)


def _count_failure(report: Delivery, message_id: int, description: str) -> None:
    state = db.session.scalar(select(Message.state).where(Message.id == message_id))
    db.session.rollback()
    if state == FAILED:
        report.failed.append(description)
    else:
        report.retrying += 1


def retry(message: Message, *, actor: audit.Actor, now: datetime) -> bool:
    """A failed message goes back in the queue, due now (the maker's retry button); audited
    against its order."""
    retried = (
        db.session.execute(
            update(Message)
            .where(Message.id == message.id, Message.state == FAILED)
            .values(state=PENDING, attempts=0, available_at=now, lease_until=None)
        ).rowcount
        == 1
    )
    order = message.order
    if retried and order is not None:
        audit.record(
            "order.message_retried",
            actor=actor,
            batch=order.batch,
            order=order,
            detail=f"{message.subject} to {message.recipient}",
        )
    return retried


def _of_maker(maker: User):
    from shop.models import Batch, Product

    return (
        select(Message)
        .join(Order, Message.order_id == Order.id)
        .join(Batch, Order.batch_id == Batch.id)
        .join(Product, Batch.product_id == Product.id)
        .where(Product.maker_id == maker.id)
    )


def failed_for_maker(maker: User, *, limit: int = 200) -> list[Message]:
    """Messages about this maker's orders that gave up, newest first."""
    return list(
        db.session.scalars(
            _of_maker(maker)
            .where(Message.state == FAILED)
            .order_by(Message.created_at.desc())
            .limit(limit)
        )
    )


def message_for_maker(maker: User, message_id: int) -> Message | None:
    """A message about one of this maker's orders; None for anyone else's (a 404)."""
    return db.session.scalar(_of_maker(maker).where(Message.id == message_id))


def for_order(order: Order) -> list[Message]:
    return list(
        db.session.scalars(
            select(Message).where(Message.order_id == order.id).order_by(Message.created_at)
        )
    )


def failed_count() -> int:
    return db.session.scalar(select(func.count()).where(Message.state == FAILED)) or 0

"""Two worker processes on one PostgreSQL outbox: every message reaches the SMTP server once."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest
from sqlalchemy import func, select

from shop import mail, outbox
from shop.extensions import db
from shop.models import Message
from shop.models.message import PENDING, SENT
from testkit import factories, servers
from tests.support.smtp import running_smtp

pytestmark = pytest.mark.concurrency

MESSAGES = 80


def _enqueue(app, count: int, tag: str) -> list[str]:
    with app.app_context():
        user = factories.make_customer()
        subjects = [f"{tag} message {n}" for n in range(count)]
        for subject in subjects:
            rendered = mail.Rendered(subject=subject, text="t\n", html="<p>h</p>")
            outbox.enqueue("test", recipient=user.email, rendered=rendered, user=user)
        db.session.commit()
        db.session.remove()
    return subjects


def _pending(app) -> int:
    with app.app_context():
        count = db.session.scalar(
            select(func.count()).select_from(Message).where(Message.state == PENDING)
        )
        db.session.remove()
    return count or 0


def _worker(database_url: str, smtp_url: str) -> subprocess.Popen:
    env = servers.server_env(
        database_url, base_url="http://shop.test", extra={"SMTP_URL": smtp_url}
    )
    return subprocess.Popen(
        [str(servers.VENV_BIN / "flask"), "--app", "wsgi", "shop", "worker", "--once"],
        cwd=servers.ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("repetition", range(1))
def test_two_workers_send_every_message_exactly_once(seed_app, race_database_url, repetition):
    subjects = _enqueue(seed_app, MESSAGES, f"race {repetition}")
    due = _pending(seed_app)

    with running_smtp(delay=0.01) as server:
        workers = [_worker(race_database_url, server.url) for _ in range(2)]
        outputs = [worker.communicate(timeout=120)[0] for worker in workers]
        received = Counter(str(r.message["Subject"]) for r in server.received)

    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert all(received[subject] == 1 for subject in subjects), received
    assert sum(received.values()) == due  # nothing else sent twice either
    assert all("outbox: sent:" in output for output in outputs)
    # Both took part: the queue was split, not sent by one while the other idled.
    sent_counts = [int(output.split("outbox: sent: ")[1].split(",")[0]) for output in outputs]
    assert sum(sent_counts) == due
    with seed_app.app_context():
        states = set(db.session.scalars(select(Message.state).where(Message.subject.in_(subjects))))
        db.session.remove()
    assert states == {SENT}

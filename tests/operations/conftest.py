"""The shop as an operator runs it: gunicorn subprocesses on PostgreSQL (and Redis), asked what
a load balancer, Prometheus and a log collector ask (docs/OPERATIONS.md)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from testkit import databases, rawhttp


@pytest.fixture(scope="package")
def ops_database_url() -> Iterator[str]:
    with databases.migrated_postgres_database("smallbatch_ops") as url:
        yield url


@pytest.fixture(scope="package")
def ops_app(ops_database_url):
    """The app on the package's database, for seeding and reading back (never serving)."""
    from shop.extensions import db

    app = databases.make_app(ops_database_url)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def silent_database() -> Iterator[str]:
    """A PostgreSQL URL whose server accepts the connection and then never says a word (a
    hung host): the kernel completes the handshake from the backlog, nothing ever reads."""
    with socket.socket() as listener:
        listener.bind((rawhttp.HOST, 0))
        listener.listen(16)
        yield f"postgresql+psycopg://postgres@{rawhttp.HOST}:{listener.getsockname()[1]}/shop"

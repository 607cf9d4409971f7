"""Fixtures shared by every test folder: the app on SQLite and PostgreSQL, client, CLI runner,
a customer and a maker.

``app`` runs each test against both databases (``[sqlite]`` and ``[postgresql]``); each test run
gets freshly created databases, migrated with the real Alembic migrations, and every table is
emptied after each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from flask import Flask

from shop import create_app
from shop.extensions import db
from testkit import databases
from testkit.factories import make_customer, make_maker
from tests.support import redis_server
from tests.support.clients import app_under_test
from tests.support.console import browser

# Shared fixtures: the Stripe emulator (emulator_server, emulator; tests/support/stripe.py), a
# real SMTP server (smtp_server; tests/support/smtp.py) and a real S3-compatible server
# (s3_server; tests/support/s3.py).
pytest_plugins = ["tests.support.stripe", "tests.support.smtp", "tests.support.s3"]

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'shop.sqlite3'}"
    databases.migrate(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    with databases.fresh_postgres_database() as url:
        databases.migrate(url)
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def app_overrides() -> dict:
    """Override in a test module to change settings for its ``app``."""
    return {}


@pytest.fixture
def app(database_url, app_overrides, tmp_path) -> Iterator[Flask]:
    app = create_app(
        databases.testing_config(
            database_url,
            SHOP_UPLOAD_DIR=str(tmp_path / "uploads"),
            SHOP_MAILBOX_DIR=str(tmp_path / "mailbox"),
            **app_overrides,
        )
    )
    # Each test-client request gets its own app context (own g, own db session), as in a server.
    with app_under_test(app):
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def customer(app):
    """A committed customer account."""
    user = make_customer()
    db.session.commit()
    return user


@pytest.fixture
def maker(app):
    """A committed maker account."""
    user = make_maker()
    db.session.commit()
    return user


@pytest.fixture
def console(app, maker):
    """The maker's browser on the console: logged in, a CSRF token at hand."""
    return browser(app, maker)


# Under CI a skip is a failure: a missing PostgreSQL or Chromium must never pass quietly.
_skipped: list[str] = []


def pytest_runtest_logreport(report) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus) -> None:
    if databases.under_ci() and _skipped and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter) -> None:
    if databases.under_ci() and _skipped:
        terminalreporter.write_line(
            f"CI: {len(_skipped)} test(s) were skipped; under CI every test must run.", red=True
        )


def pytest_report_header() -> list[str]:
    reason = databases.postgres_unavailable_reason()
    redis_reason = redis_server.redis_unavailable_reason()
    return [
        f"CI mode: {'yes' if databases.under_ci() else 'no'}",
        "PostgreSQL: " + ("available" if reason is None else reason),
        "Redis: " + ("available" if redis_reason is None else redis_reason),
        f"SHOP_ENV for servers started by tests: {os.environ.get('SHOP_ENV', 'testing')}",
    ]

"""Settings and databases for tests and benchmarks: the testing config pointed at a database,
a fresh SQLite file or a freshly created PostgreSQL database, migrated with the real migrations.

PostgreSQL comes from ``TEST_DATABASE_URL`` (default: the local server, user postgres). When it
is unreachable a local run skips what needs it and says so; under CI (``CI=true``) that is a
failure, never a skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.engine import make_url

import config as settings
from shop import create_app
from shop.extensions import db

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_ADMIN_URL


def postgres_unavailable_reason() -> str | None:
    url = admin_url()
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        return (
            f"PostgreSQL is not reachable at {make_url(url).render_as_string()} ({first_line}). "
            "Start it or set TEST_DATABASE_URL to run the PostgreSQL, concurrency and "
            "integration tests."
        )
    return None


def require(needed: str, missing_reason: str | None) -> None:
    """Skip locally, fail under CI, when something a test needs is missing (a reason is given)."""
    if missing_reason is None:
        return
    if under_ci():
        pytest.fail(f"CI needs {needed}: {missing_reason}", pytrace=False)
    pytest.skip(missing_reason)


def require_postgres() -> None:
    """Skip locally, fail under CI, when PostgreSQL cannot be reached."""
    require("PostgreSQL", postgres_unavailable_reason())


@contextmanager
def fresh_postgres_database(prefix: str = "smallbatch_test") -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URL, drop it afterwards."""
    require_postgres()
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = libpq_url(admin_url())
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(admin_url())
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def testing_config(database_url: str, **overrides: object) -> settings.Config:
    """TestingConfig pointed at ``database_url``, with ``overrides`` applied."""
    config = settings.TestingConfig()
    config.SQLALCHEMY_DATABASE_URI = database_url
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def make_app(database_url: str, **overrides: object) -> Flask:
    """The real app on ``database_url`` under TestingConfig (for seeding and in-process servers)."""
    return create_app(testing_config(database_url, **overrides))


def empty_all_tables() -> None:
    tables = list(reversed(db.metadata.sorted_tables))
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(t.name for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


def clean_up() -> None:
    """After a test, in its app context: drop the session, empty every table, close the pool."""
    db.session.remove()
    empty_all_tables()
    db.engine.dispose()


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy URL as psycopg/libpq wants it (``postgresql://…``)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def migrate(database_url: str) -> None:
    """Run the real Alembic migrations against ``database_url``."""
    app = make_app(database_url)
    with app.app_context():
        upgrade()
        db.engine.dispose()


@contextmanager
def migrated_postgres_database(prefix: str = "smallbatch_race") -> Iterator[str]:
    """A freshly created, migrated PostgreSQL database; dropped afterwards."""
    with fresh_postgres_database(prefix) as url:
        migrate(url)
        yield url


def migrated_sqlite_database(directory: Path) -> str:
    """A migrated SQLite file in ``directory`` (WAL mode is set by the app on connect)."""
    url = f"sqlite:///{Path(directory) / 'shop.sqlite3'}"
    migrate(url)
    return url

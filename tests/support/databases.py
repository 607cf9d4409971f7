"""Test databases: a fresh SQLite file or a freshly created PostgreSQL database per run.

PostgreSQL comes from ``TEST_DATABASE_URL`` (default: the local server, user postgres). When it
is unreachable a local run skips what needs it and says so; under CI (``CI=true``) that is a
failure, never a skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy.engine import make_url

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_ADMIN_URL


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_unavailable_reason() -> str | None:
    url = admin_url()
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3, autocommit=True) as conn:
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
    admin = _libpq(admin_url())
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

"""Fixtures for the security tests: clients that behave like separate browsers on a real
server, and rate limiting switched on against Redis. (The ``customer`` and ``maker`` accounts
come from tests/conftest.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from shop.extensions import db, limiter
from tests.security.helpers import close_limiter_storage, production_app
from tests.support import redis_server


@pytest.fixture
def rate_limits(monkeypatch) -> Iterator[dict]:
    """Settings that switch rate limiting on, counting in Redis under this test's own prefix.

    Use as ``app_overrides`` in a module. Flask-Limiter keeps the key prefix of the first app it
    was bound to in this process, so it is cleared here for the app about to be built.
    """
    with redis_server.private_prefix() as prefix:
        monkeypatch.setattr(limiter, "_key_prefix", "")
        yield {
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": redis_server.redis_url(),
            "RATELIMIT_KEY_PREFIX": prefix,
            "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": False,
            "RATELIMIT_SWALLOW_ERRORS": False,
        }
        close_limiter_storage()


@pytest.fixture
def production(monkeypatch, tmp_path) -> Iterator[Callable[..., Flask]]:
    """Build production apps from a valid environment (``None`` unsets a variable); their
    database connections are closed afterwards."""
    built: list[Flask] = []

    def build(database_url: str | None = None, **overrides: str | None) -> Flask:
        url = database_url or f"sqlite:///{tmp_path / 'production.sqlite3'}"
        app = production_app(monkeypatch, url, **overrides)
        built.append(app)
        return app

    yield build
    for app in built:
        with app.app_context():
            db.engine.dispose()

"""Fixtures for the security tests: accounts, clients that behave like separate browsers on a
real server, and rate limiting switched on against Redis."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator

import pytest
from flask.globals import _cv_app
from flask.testing import FlaskClient

from shop.extensions import db, limiter
from tests.security.helpers import close_limiter_storage
from tests.support import redis_server
from tests.support.factories import make_customer, make_maker


class SeparateRequestClient(FlaskClient):
    """Each request in an app context of its own, as on a real server.

    The ``app`` fixture keeps an app context pushed for the whole test, and Flask reuses it for
    test-client requests, so ``g`` would carry Flask-Login's current user and Flask-WTF's CSRF
    token from one request (and one client) to the next: a brand-new client would be "logged
    in". Security tests must see exactly what a second browser would.
    """

    def open(self, *args, **kwargs):
        db.session.commit()  # end the test's own transaction (SQLite takes the write lock)
        return contextvars.copy_context().run(self._open_alone, args, kwargs)

    def _open_alone(self, args, kwargs):
        _cv_app.set(None)  # type: ignore[arg-type]
        return super().open(*args, **kwargs)


@pytest.fixture
def app(app):
    app.test_client_class = SeparateRequestClient
    return app


@pytest.fixture
def customer(app):
    user = make_customer()
    db.session.commit()
    return user


@pytest.fixture
def maker(app):
    user = make_maker()
    db.session.commit()
    return user


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

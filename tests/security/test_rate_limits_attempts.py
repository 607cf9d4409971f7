"""Attempts counted before the work (shop/attempts.py), in Redis as in production and in a
process's memory (development, or Redis unreachable): a place is taken in every window of every
key or in none, a full window says when it frees up, and a place given back is free again."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
from flask import Flask

from shop import attempts, create_app
from shop.errors import TooManyAttempts
from shop.extensions import limiter
from testkit import databases
from tests.security.helpers import close_limiter_storage
from tests.support import redis_server


@pytest.fixture(params=["redis", "memory"])
def counting(request, monkeypatch) -> Iterator[Flask]:
    """An app whose rate limits count in Redis (a private prefix) or in memory."""
    monkeypatch.setattr(limiter, "_key_prefix", "")
    if request.param == "redis":
        with redis_server.private_prefix() as prefix:
            app = create_app(
                databases.testing_config(
                    "sqlite://",
                    RATELIMIT_ENABLED=True,
                    RATELIMIT_STORAGE_URI=redis_server.redis_url(),
                    RATELIMIT_KEY_PREFIX=prefix,
                    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=False,
                    RATELIMIT_SWALLOW_ERRORS=False,
                )
            )
            with app.app_context():
                yield app
            close_limiter_storage()
    else:
        app = create_app(
            databases.testing_config(
                "sqlite://",
                RATELIMIT_ENABLED=True,
                RATELIMIT_STORAGE_URI="memory://",
                RATELIMIT_KEY_PREFIX=f"memory-{secrets.token_hex(4)}",
            )
        )
        with app.app_context():
            yield app


def counted(key: str, limit: str, scope: str = "test") -> attempts.Counted:
    return attempts.Counted(scope, key, limit)


def test_a_full_window_refuses_and_says_when_a_place_frees_up(counting):
    for _ in range(3):
        attempts.reserve([counted("a", "3 per minute")])
    with pytest.raises(TooManyAttempts) as refused:
        attempts.reserve([counted("a", "3 per minute")])
    assert 55 <= refused.value.retry_after <= 60
    attempts.reserve([counted("b", "3 per minute")])  # another key counts apart


def test_every_window_of_a_limit_counts(counting):
    for _ in range(2):
        attempts.reserve([counted("a", "5 per minute; 2 per hour")])
    with pytest.raises(TooManyAttempts) as refused:
        attempts.reserve([counted("a", "5 per minute; 2 per hour")])
    assert 3500 <= refused.value.retry_after <= 3600


def test_a_refused_attempt_takes_nothing_from_the_other_keys(counting):
    attempts.reserve([counted("full", "1 per minute")])
    for _ in range(3):
        with pytest.raises(TooManyAttempts):
            attempts.reserve([counted("free", "2 per minute"), counted("full", "1 per minute")])
    attempts.reserve([counted("free", "2 per minute")])
    attempts.reserve([counted("free", "2 per minute")])


def test_a_place_given_back_is_free_again_and_only_once(counting):
    first = attempts.reserve([counted("a", "2 per minute"), counted("b", "2 per minute")])
    attempts.reserve([counted("a", "2 per minute")])
    first.give_back()
    first.give_back()
    attempts.reserve([counted("a", "2 per minute")])
    with pytest.raises(TooManyAttempts):
        attempts.reserve([counted("a", "2 per minute")])
    attempts.reserve([counted("b", "1 per minute")])


def test_a_place_leaves_the_window_when_its_time_is_up(counting):
    attempts.reserve([counted("a", "1 per second")])
    with pytest.raises(TooManyAttempts):
        attempts.reserve([counted("a", "1 per second")])
    time.sleep(1.1)
    attempts.reserve([counted("a", "1 per second")])


def test_nothing_is_counted_while_rate_limiting_is_off(app):
    for _ in range(5):
        attempts.reserve([counted("a", "1 per hour")])


def test_an_unreachable_redis_counts_in_memory_meanwhile(monkeypatch):
    monkeypatch.setattr(limiter, "_key_prefix", "")
    app = create_app(
        databases.testing_config(
            "sqlite://",
            RATELIMIT_ENABLED=True,
            RATELIMIT_STORAGE_URI="redis://127.0.0.1:9/0",  # the discard port: nothing listens
            RATELIMIT_KEY_PREFIX=f"down-{secrets.token_hex(4)}",
            RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        )
    )
    with app.app_context():
        attempts.reserve([counted("a", "1 per minute")])
        with pytest.raises(TooManyAttempts):
            attempts.reserve([counted("a", "1 per minute")])

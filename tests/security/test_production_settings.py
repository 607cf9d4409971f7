"""Production refuses weak, missing or contradictory settings, and runs hardened when they are
right: no debugger, secure cookies, HSTS, only its own host, Redis when REDIS_URL is set."""

from __future__ import annotations

import logging

import pytest
from flask import request
from limits.storage import MemoryStorage, RedisStorage

import config as settings
from shop import create_app
from shop.extensions import limiter
from tests.security.helpers import (
    PRODUCTION_BASE_URL,
    close_limiter_storage,
    production_env,
)
from tests.support import redis_server


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'prod.sqlite3'}"


def test_a_complete_production_environment_starts_without_debug(production, db_url):
    app = production(db_url)
    assert app.debug is False
    assert app.config["TESTING"] is False
    assert app.config["TRUSTED_HOSTS"] == ["shop.example.com"]


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"SECRET_KEY": "too-short"}, "SECRET_KEY"),
        ({"SECRET_KEY": "a" * 64}, "SECRET_KEY"),  # long but one character repeated
        ({"SECRET_KEY": "dev-only-secret-not-for-production"[:31]}, "SECRET_KEY"),
        ({"STRIPE_SECRET_KEY": "sk_test_emulator"}, "STRIPE_SECRET_KEY"),
        ({"STRIPE_SECRET_KEY": "pk_live_publishable"}, "STRIPE_SECRET_KEY"),
        ({"STRIPE_WEBHOOK_SECRET": "not-a-webhook-secret"}, "STRIPE_WEBHOOK_SECRET"),
        (
            {"STRIPE_SECRET_KEY": "sk_live_abcdef0123456789", "STRIPE_API_BASE": "http://x:1"},
            "STRIPE_API_BASE",
        ),
        ({"SHOP_BASE_URL": "http://shop.example.com"}, "SHOP_BASE_URL"),
        ({"SHOP_BASE_URL": "https://"}, "SHOP_BASE_URL"),
        ({"FLASK_DEBUG": "1"}, "DEBUG"),
        ({"SHOP_METRICS_TOKEN": "metrics"}, "SHOP_METRICS_TOKEN"),
        ({"SHOP_METRICS_TOKEN": "a b" * 20}, "SHOP_METRICS_TOKEN"),
    ],
    ids=[
        "short-secret",
        "low-entropy-secret",
        "31-char-secret",
        "emulator-key",
        "publishable-key",
        "webhook-secret",
        "emulator-with-live-key",
        "http-base-url",
        "hostless-base-url",
        "flask-debug-env",
        "short-metrics-token",
        "metrics-token-with-spaces",
    ],
)
def test_production_refuses_unsafe_settings_and_names_them(
    production, db_url, overrides, complaint
):
    with pytest.raises(RuntimeError) as error:
        production(db_url, **overrides)
    assert complaint in str(error.value)
    assert "cannot start" in str(error.value)


@pytest.mark.parametrize(
    "missing", ["SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "SHOP_BASE_URL"]
)
def test_production_refuses_a_missing_secret_or_address(production, db_url, missing):
    with pytest.raises(RuntimeError, match=missing):
        production(db_url, **{missing: None})


def test_production_refuses_debug_in_its_settings(monkeypatch, db_url):
    production_env(monkeypatch, db_url)
    config = settings.load()
    config.DEBUG = True
    with pytest.raises(RuntimeError, match="DEBUG must be off"):
        create_app(config)


def test_a_test_stripe_key_against_the_emulator_is_allowed_for_a_staging_shop(production, db_url):
    app = production(
        db_url, STRIPE_API_BASE="http://127.0.0.1:12111", STRIPE_SECRET_KEY="sk_test_x"
    )
    assert app.config["STRIPE_API_BASE"] == "http://127.0.0.1:12111"


def test_production_counts_rate_limits_in_redis_when_redis_url_is_set(production, db_url):
    redis_server.require_redis()
    app = production(db_url, REDIS_URL=redis_server.redis_url())
    try:
        assert app.config["RATELIMIT_STORAGE_URI"] == redis_server.redis_url()
        assert app.config["RATELIMIT_ENABLED"] is True
        assert isinstance(limiter.storage, RedisStorage)
    finally:
        close_limiter_storage()


def test_production_without_redis_warns_that_limits_are_per_process(production, db_url, caplog):
    with caplog.at_level(logging.WARNING):
        app = production(db_url)
    assert isinstance(limiter.storage, MemoryStorage)
    assert app.config["RATELIMIT_ENABLED"] is True
    assert any("REDIS_URL is not set" in record.getMessage() for record in caplog.records)


def test_production_trusts_forwarded_addresses_only_as_many_hops_as_configured(production, db_url):
    app = production(db_url, SHOP_PROXY_COUNT="1")
    seen = {}

    @app.get("/_probe/ip")
    def probe():
        seen["ip"] = request.remote_addr
        seen["scheme"] = request.scheme
        return "ok"

    client = app.test_client()
    client.get(
        "/_probe/ip",
        base_url=PRODUCTION_BASE_URL,
        headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.7", "X-Forwarded-Proto": "https"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    # One proxy of ours: only the last hop it appended is believed, not what the client wrote.
    assert seen == {"ip": "203.0.113.7", "scheme": "https"}


def test_without_proxies_configured_forwarded_headers_are_ignored_and_reported_once(
    production, db_url, caplog
):
    app = production(db_url)
    seen = []

    @app.get("/_probe/ip")
    def probe():
        seen.append(request.remote_addr)
        return "ok"

    client = app.test_client()
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            client.get(
                "/_probe/ip",
                base_url=PRODUCTION_BASE_URL,
                headers={"X-Forwarded-For": "198.51.100.9"},
                environ_base={"REMOTE_ADDR": "192.0.2.44"},
            )
    assert seen == ["192.0.2.44", "192.0.2.44"]
    warnings = [r for r in caplog.records if "SHOP_PROXY_COUNT is 0" in r.getMessage()]
    assert len(warnings) == 1

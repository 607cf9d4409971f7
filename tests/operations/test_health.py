"""``/healthz`` and ``/readyz`` from real gunicorn processes: ready on a migrated database and a
live Redis; 503 naming the part that fails, quickly, when one is down, hung or behind."""

from __future__ import annotations

import json
import time

import pytest

from shop.extensions import limiter
from testkit import databases, rawhttp, servers
from tests.support import redis_server

pytestmark = pytest.mark.concurrency


def ask(server: servers.Server, path: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = rawhttp.http_request(server.address, "GET", path, timeout=10)
    return response.status, json.loads(response.text), time.monotonic() - started


def test_a_migrated_database_and_a_live_redis_are_ready(ops_database_url):
    redis_server.require_redis()
    env = {"REDIS_URL": redis_server.redis_url()}
    with servers.start_gunicorn(ops_database_url, workers=2, threads=2, extra_env=env) as server:
        status, body, _ = ask(server, "/readyz")
        assert (status, body["status"]) == (200, "ready"), body
        assert body["checks"] == {"database": "ok", "redis": "ok"}
        assert ask(server, "/healthz")[:2] == (200, {"status": "ok"})


def test_a_database_nobody_listens_on_is_not_ready_and_the_process_still_healthy():
    dead = f"postgresql+psycopg://postgres@{rawhttp.HOST}:{servers.free_port()}/shop"
    with servers.start_gunicorn(dead, workers=1, threads=2, ready_path="/healthz") as server:
        assert ask(server, "/healthz")[:2] == (200, {"status": "ok"})
        status, body, took = ask(server, "/readyz")
        assert status == 503
        assert body["failing"] == ["database"]
        assert body["checks"]["database"].startswith("unreachable")
        assert took < 1.0
        assert "postgres@" not in json.dumps(body)  # no connection string in the answer


def test_a_hung_database_host_gets_503_in_under_a_second_every_time(silent_database):
    with servers.start_gunicorn(
        silent_database, workers=1, threads=4, ready_path="/healthz"
    ) as server:
        for _ in range(3):
            status, body, took = ask(server, "/readyz")
            assert (status, body["failing"]) == (503, ["database"]), body
            assert took < 1.0, took
        assert ask(server, "/healthz")[0] == 200


def test_a_redis_that_is_down_is_named(ops_database_url):
    env = {"REDIS_URL": f"redis://{rawhttp.HOST}:{servers.free_port()}/0"}
    with servers.start_gunicorn(ops_database_url, workers=1, threads=2, extra_env=env) as server:
        status, body, took = ask(server, "/readyz")
        assert (status, body["failing"]) == (503, ["redis"]), body
        assert body["checks"]["database"] == "ok"
        assert took < 1.0


def test_a_database_behind_the_migrations_is_not_ready():
    with databases.fresh_postgres_database("smallbatch_unmigrated") as url:
        app = databases.make_app(url)
        response = app.test_client().get("/readyz")
        with app.app_context():
            from shop.extensions import db

            db.engine.dispose()
    assert response.status_code == 503
    assert response.json["failing"] == ["database"]
    assert "not migrated" in response.json["checks"]["database"]


def test_health_checks_are_never_rate_limited(ops_database_url):
    app = databases.make_app(
        ops_database_url, RATELIMIT_ENABLED=True, RATELIMIT_APPLICATION="2 per minute"
    )
    client = app.test_client()
    try:
        assert [client.get("/readyz").status_code for _ in range(5)] == [200] * 5
        assert [client.get("/healthz").status_code for _ in range(5)] == [200] * 5
        assert client.get("/").status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/").status_code == 429  # the application-wide limit is real
    finally:
        limiter.reset()
        with app.app_context():
            from shop.extensions import db

            db.engine.dispose()

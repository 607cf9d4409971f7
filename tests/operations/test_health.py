"""``/healthz`` and ``/readyz`` from real gunicorn processes: ready on a migrated database and a
live Redis; 503 naming the part that fails, quickly, when one is down, hung or behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

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


# Flask-Limiter keeps application limits on its one global object once set, so this app is
# built in a process of its own.
_UNDER_AN_APPLICATION_LIMIT = """
import json, sys
from testkit import databases
app = databases.make_app(sys.argv[1], RATELIMIT_ENABLED=True, RATELIMIT_APPLICATION="2 per minute")
client = app.test_client()
print(json.dumps({path: [client.get(path).status_code for _ in range(5)]
                  for path in ("/readyz", "/healthz", "/")}))
"""


def test_health_checks_are_never_rate_limited(ops_database_url):
    finished = subprocess.run(
        [sys.executable, "-c", _UNDER_AN_APPLICATION_LIMIT, ops_database_url],
        cwd=servers.ROOT,
        env={**os.environ, "SHOP_ENV": "testing"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    statuses = json.loads(finished.stdout.splitlines()[-1])
    assert statuses["/readyz"] == [200] * 5
    assert statuses["/healthz"] == [200] * 5
    assert statuses["/"] == [200, 200, 429, 429, 429]  # the application-wide limit is real

"""Fixtures for races over real sockets and real processes against one PostgreSQL database.

The database is created and migrated once for the package; every repetition of a race uses a
fresh batch in it, so the rows of earlier races stay around as witnesses.
"""

from __future__ import annotations

import json
import random
import secrets
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import psycopg
import pytest
from flask import Flask
from sqlalchemy import text

import stripe_emulator
from shop import clock, inventory, sweeper
from shop.extensions import db
from shop.models import Batch, Order
from testkit import bursts, databases, factories, invariants, rawhttp, servers
from tests.support import redis_server

# Several worker processes, each with threads: races inside a process and across processes.
WORKERS = 3
THREADS = 4
# Each race runs this many times on the same server, each time on a fresh drop and batch.
REPETITIONS = 5
# What a refused buyer reads.
SOLD_OUT = "Sold out"
AT_THE_LIMIT = "the most this batch allows"


@pytest.fixture(scope="package")
def race_database_url() -> Iterator[str]:
    with databases.migrated_postgres_database() as url:
        yield url


@pytest.fixture(scope="package")
def seed_app(race_database_url) -> Iterator[Flask]:
    """The app on the race database, for seeding and checking (never serving)."""
    app = databases.make_app(race_database_url)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def violations(app: Flask, batch_id: int) -> list[str]:
    with app.app_context(), db.engine.connect() as connection:
        return invariants.violations(connection, batch_id)


def stock(app: Flask, batch_id: int) -> tuple[int, int, int]:
    with app.app_context(), db.engine.connect() as connection:
        return invariants.stock(connection, batch_id)


def hold_units(
    app: Flask, batch_id: int, quantities: list[int], *, now: datetime, paid: bool = False
) -> list[int]:
    """Each quantity held by a new customer at ``now`` (and paid, if asked); the order ids."""
    with app.app_context():
        batch = db.session.get(Batch, batch_id)
        placed = []
        for quantity in quantities:
            order = inventory.hold(batch.id, quantity, customer=factories.make_customer(), now=now)
            if paid:
                inventory.confirm(order, now=now)
            placed.append(order.id)
            db.session.commit()
        db.session.remove()
    return placed


def order_states(app: Flask, order_ids: list[int]) -> dict[int, str]:
    with app.app_context():
        rows = db.session.query(Order.id, Order.state).filter(Order.id.in_(order_ids)).all()
        db.session.remove()
    return dict(rows)


class Racers:
    """Python processes that run an action at the same instant (see ``tests.concurrency.racer``).

    The barrier is a PostgreSQL advisory lock this object holds: every racer blocks on it in
    shared mode, and once all of them are seen waiting in ``pg_locks`` it is released.
    """

    def __init__(self, database_url: str, count: int = 2) -> None:
        self.admin = psycopg.connect(databases.libpq_url(database_url), autocommit=True)
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.concurrency.racer", database_url],
                cwd=servers.ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        for process in self.processes:
            assert self._read(process, timeout=30) == {"ready": True}

    def race(self, commands: list[dict]) -> list[object]:
        """Run ``commands[i]`` in racer ``i``, all released together; their results."""
        key = random.randrange(1, 2**31)
        self.admin.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            for process, command in zip(self.processes, commands, strict=True):
                assert process.stdin is not None
                process.stdin.write(json.dumps({**command, "key": key}) + "\n")
                process.stdin.flush()
            self._wait_for_waiters(key, len(commands))
        finally:
            self.admin.execute("SELECT pg_advisory_unlock(%s)", (key,))
        outcomes = [self._read(process, timeout=30) for process in self.processes]
        errors = [o["error"] for o in outcomes if "error" in o]
        assert not errors, errors
        return [o["result"] for o in outcomes]

    def _wait_for_waiters(self, key: int, count: int) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            waiting = self.admin.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = 0 AND objid = %s AND NOT granted",
                (key,),
            ).fetchone()[0]
            if waiting >= count:
                return
            time.sleep(0.005)
        raise TimeoutError(f"only {waiting} of {count} racers reached the barrier")

    def _read(self, process: subprocess.Popen, *, timeout: float) -> dict:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise TimeoutError("a racer did not answer")
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"a racer exited with {process.wait(5)}")
        return json.loads(line)

    def close(self) -> None:
        for process in self.processes:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.close()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            process.stdout.close()  # type: ignore[union-attr]
        self.admin.close()


@pytest.fixture(scope="module")
def racers(race_database_url) -> Iterator[Racers]:
    racing = Racers(race_database_url)
    yield racing
    racing.close()


@pytest.fixture(scope="package")
def emulator() -> Iterator[stripe_emulator.RunningEmulator]:
    with stripe_emulator.serve_in_thread() as running:
        yield running


@pytest.fixture(scope="package")
def shop_server(race_database_url, emulator) -> Iterator[servers.Server]:
    """The real app under gunicorn: several worker processes, each with threads."""
    with servers.start_gunicorn(
        race_database_url, workers=WORKERS, threads=THREADS, stripe_api_base=emulator.url
    ) as server:
        yield server


@pytest.fixture(scope="module")
def limited_server(race_database_url) -> Iterator[servers.Server]:
    """The shop with rate limits on, counted in Redis under a prefix of this module's own,
    behind one trusted proxy (so each request can say which client address it comes from)."""
    redis_server.require_redis()
    with (
        redis_server.private_prefix("smallbatch-races") as prefix,
        servers.start_gunicorn(
            race_database_url,
            workers=WORKERS,
            threads=THREADS,
            extra_env={
                "RATELIMIT_ENABLED": "1",
                "REDIS_URL": redis_server.redis_url(),
                "RATELIMIT_KEY_PREFIX": prefix,
                "SHOP_PROXY_COUNT": "1",
            },
        ) as server,
    ):
        yield server


@pytest.fixture(scope="module")
def redis_env() -> Iterator[dict[str, str]]:
    """Settings for servers that share what the app keeps between processes (the waiting room's
    line, the page cache, rate-limit counters) in Redis under a prefix of this module's own, and
    one secret, so a restarted server reads the same sessions and cookies."""
    with redis_server.private_prefix("smallbatch-shared") as prefix:
        yield {
            "REDIS_URL": redis_server.redis_url(),
            "RATELIMIT_KEY_PREFIX": prefix,
            "SECRET_KEY": secrets.token_urlsafe(32),
        }


@pytest.fixture(scope="module")
def redis_app(race_database_url, redis_env) -> Iterator[Flask]:
    """The app as the sweeper and the webhook run beside the servers: the same Redis, so what
    they change reaches the servers' shared numbers at once (``page_cache.numbers_changed``)."""
    app = databases.make_app(race_database_url, **redis_env)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def redis_shop(race_database_url, emulator, redis_env) -> Iterator[servers.Server]:
    """The real app under gunicorn as in production: several processes sharing Redis."""
    with servers.start_gunicorn(
        race_database_url,
        workers=WORKERS,
        threads=THREADS,
        stripe_api_base=emulator.url,
        extra_env=redis_env,
    ) as server:
        yield server


def expire_holds(app, batch_id: int, count: int) -> int:
    """Make ``count`` of the batch's holds run out, then run the real sweeper."""
    with app.app_context():
        db.session.execute(
            text(
                "UPDATE orders SET hold_expires_at = :past WHERE id IN ("
                " SELECT id FROM orders WHERE batch_id = :batch AND state = 'held'"
                " ORDER BY id LIMIT :count)"
            ),
            {"past": clock.now() - timedelta(minutes=1), "batch": batch_id, "count": count},
        )
        db.session.commit()
        released = sweeper.sweep(clock.now())["released"]
        db.session.remove()
    return released


def from_address(request: bytes, ip: str) -> bytes:
    """``request`` as if the trusted proxy had seen it come from ``ip``."""
    head, separator, body = request.partition(b"\r\n\r\n")
    return head + f"\r\nX-Forwarded-For: {ip}".encode() + separator + body


def fresh_addresses(count: int) -> list[str]:
    """``count`` client addresses, each in a /24 of its own, that nothing else in this run
    uses (so counters of earlier tests never meet them)."""
    network = random.randrange(1, 250)
    first = random.randrange(0, 250 - count)
    return [f"10.{network}.{first + n}.{random.randrange(1, 250)}" for n in range(count)]


def login_all(address: rawhttp.Address, customers, *, page: str) -> list[rawhttp.ShopSession]:
    """Log every customer in through the real form (a few at a time)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda c: rawhttp.login(address, c.email, page=page), customers))


def assert_burst(
    outcome: bursts.Burst,
    server: servers.Server,
    *,
    won: int,
    lost: int,
    saying: str,
    status: int = 409,
) -> None:
    """No 5xx; ``won`` requests got their 303, the other ``lost`` a ``status`` ``saying`` why."""
    assert_no_server_errors(outcome.responses, server)
    assert outcome.count(303) == won
    refused = [r for r in outcome.responses if r.status != 303]
    assert [r.status for r in refused] == [status] * lost
    assert all(saying in r.text for r in refused)


def assert_no_server_errors(responses: list[rawhttp.Response], server: servers.Server) -> None:
    failed = [r for r in responses if r.status >= 500]
    assert not failed, (
        f"{len(failed)} responses were 5xx, e.g. {failed[0].status}: {failed[0].text[:500]}\n"
        f"server log:\n{server.log()[-4000:]}"
    )

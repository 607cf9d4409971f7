"""Is this process ready for traffic: the database answers and is migrated to head, Redis
answers when it is configured. For ``/readyz`` (docs/OPERATIONS.md).

A load balancer asks often, and most of all while something is down, so every check has a
short timeout and the whole answer a deadline (:data:`DEADLINE`): a database host that drops
packets makes ``/readyz`` say 503 within the deadline, never hang. The checks run in one
thread per process, one round at a time; callers arriving meanwhile share its answer.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import redis
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

import config as settings
from shop.extensions import db

log = logging.getLogger(__name__)

DEADLINE = 0.8  # seconds for the whole answer
CONNECT_TIMEOUT = 2  # seconds; libpq's least (the deadline answers before it runs out)
STATEMENT_TIMEOUT_MS = 500
REDIS_TIMEOUT = 0.5  # seconds, to connect and to answer
EXTENSION_KEY = "shop.health"

OK = "ok"
NOT_CONFIGURED = "not configured"


@dataclass
class Readiness:
    """Each part's state: ``ok``, ``not configured``, or what is wrong (no secrets, no URLs)."""

    checks: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)  # for the log only

    @property
    def failing(self) -> list[str]:
        return [name for name, state in self.checks.items() if state not in (OK, NOT_CONFIGURED)]

    @property
    def ready(self) -> bool:
        return not self.failing


class _Prober:
    """The app's probes: a connection per check (no pool to wait for, none to leave broken),
    one round in flight at a time."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.engine = _probe_engine(app)
        url = app.config.get("REDIS_URL")
        self.redis = (
            redis.Redis.from_url(
                url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
            )
            if url
            else None
        )
        self.heads = frozenset(ScriptDirectory(str(settings.BASE_DIR / "migrations")).get_heads())
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")
        self._lock = threading.Lock()
        self._running: Future[Readiness] | None = None
        self._last_failing: list[str] = []
        self._checking = ""  # the part the running round is waiting for

    def check(self) -> Readiness:
        with self._lock:
            if self._running is None or self._running.done():
                self._running = self._pool.submit(self._round)
            running = self._running
        try:
            readiness = running.result(timeout=DEADLINE)
        except FutureTimeout:
            readiness = Readiness({self._checking: f"no answer within {DEADLINE} s"})
        self._log_change(readiness)
        return readiness

    def _round(self) -> Readiness:
        readiness = Readiness()
        for name, part in (("database", self._database), ("redis", self._redis)):
            self._checking = name
            try:
                readiness.checks[name] = part()
            except Exception as error:  # any failure means "not ready"; the log says which
                readiness.checks[name] = f"unreachable ({type(error).__name__})"
                readiness.details[name] = str(error)
        return readiness

    def _database(self) -> str:
        with self.app.app_context(), self._engine().connect() as connection:
            migrated = inspect(connection).has_table("alembic_version")
            found = {row[0] for row in connection.execute(text(_VERSIONS))} if migrated else set()
        if found != self.heads:
            return "not migrated to head (run flask db upgrade)"
        return OK

    def _engine(self) -> Engine:
        return self.engine if self.engine is not None else db.engine

    def _redis(self) -> str:
        if self.redis is None:
            return NOT_CONFIGURED
        self.redis.ping()
        return OK

    def _log_change(self, readiness: Readiness) -> None:
        """A warning when a part starts or stops failing, not on every probe."""
        failing = readiness.failing
        if failing != self._last_failing:
            self._last_failing = failing
            if failing:
                log.warning("not ready: %s %s", readiness.checks, readiness.details)
            else:
                log.warning("ready again")


_VERSIONS = "SELECT version_num FROM alembic_version"


def _probe_engine(app: Flask) -> Engine | None:
    """PostgreSQL: an engine of the probe's own, short timeouts, no pool. SQLite: None (the
    app's engine, a local file)."""
    url = app.config.get("SQLALCHEMY_DATABASE_URI") or ""
    if not str(url).startswith("postgresql"):
        return None
    return create_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            "application_name": "smallbatch-readyz",
        },
    )


_build_lock = threading.Lock()


def readiness(app: Flask) -> Readiness:
    """The app's readiness now (at most :data:`DEADLINE` seconds)."""
    prober = app.extensions.get(EXTENSION_KEY)
    if prober is None:
        with _build_lock:
            prober = app.extensions.get(EXTENSION_KEY)
            if prober is None:
                prober = app.extensions[EXTENSION_KEY] = _Prober(app)
    return prober.check()

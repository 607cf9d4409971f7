"""Engine behaviour per database, set when the app is built (no connection is opened here).

SQLite: every transaction that may write takes the write lock up front (``BEGIN IMMEDIATE``) and
waits for it, so concurrent buyers on the embedded server queue instead of failing with "database
is locked" (a deferred transaction that read first cannot wait for the lock: it fails at once).
Requests with a safe method (GET, HEAD, OPTIONS) read in deferred transactions, which WAL lets run
beside a writer. Outside requests (CLI, the sweeper) transactions are immediate too, except in
tests, whose own fixture sessions must not block the requests they make.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime

from flask import Flask, current_app, has_app_context, has_request_context, request
from psycopg.pq import TransactionStatus
from sqlalchemy import Select, event, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute

from shop.errors import InvalidInput, NotFound
from shop.extensions import db

SQLITE_BUSY_TIMEOUT_MS = 30_000


def configure_engine(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if _may_write() else "BEGIN")


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def writes(view):
    """Mark a view that writes although its method is safe (a GET that Stripe redirects to)."""
    view.writes_on_safe_method = True
    return view


# Set while ``read_row`` reads outside a request (``shop.fast_path``): a read, never a writer.
_reading: ContextVar[bool] = ContextVar("reading", default=False)


def _may_write() -> bool:
    if _reading.get():
        return False
    if has_request_context():
        if request.method not in SAFE_METHODS:
            return True
        view = current_app.view_functions.get(request.endpoint or "")
        return getattr(view, "writes_on_safe_method", False)
    return not (has_app_context() and current_app.testing)


def is_postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


# A connection of its own, outside the session, for statements that commit one by one.
_own_connection: ContextVar = ContextVar("own_connection", default=None)


def driver_connection():
    """The psycopg connection for the hot path's one statement (``inventory.reserve``):
    inside :func:`committed`, a pooled connection of its own that commits each statement;
    otherwise the one under the session's current transaction (begun if need be). Handed to the
    driver directly: SQLAlchemy's per-statement work costs more CPU than the statement."""
    own = _own_connection.get()
    if own is not None:
        return own
    return db.session.connection().connection.driver_connection


def commits_alone() -> bool:
    """True inside :func:`committed` on PostgreSQL: a failed statement there leaves the
    session's own transaction readable."""
    return _own_connection.get() is not None


@contextmanager
def committed() -> Iterator[None]:
    """Commit what the block writes when it ends — on PostgreSQL statement by statement.

    For a request whose only write is one statement (the buy). On PostgreSQL,
    :func:`driver_connection` is then a pooled connection of its own on which each statement
    commits by itself: no BEGIN or COMMIT round trip, none while a row is locked, and no session
    transaction to set up and commit. On SQLite the block runs in the session's write-locked
    (``BEGIN IMMEDIATE``) transaction, committed at the end.
    """
    if not is_postgresql():
        yield
        db.session.commit()
        return
    with _autocommitting() as connection:
        token = _own_connection.set(connection)
        try:
            yield
        finally:
            _own_connection.reset(token)


def read_row(statement: Select, params: dict) -> tuple | None:
    """The first row of a read-only ``statement``, outside the session. On PostgreSQL it goes
    to the driver on a pooled connection of its own that commits each statement, as
    :func:`committed` does: one round trip, no BEGIN or ROLLBACK around it (for a page a crowd
    reloads, ``auth.links_and_taken``). On SQLite it runs in the session."""
    if not is_postgresql():
        token = _reading.set(True)
        try:
            return db.session.execute(statement, params).first()
        finally:
            _reading.reset(token)
    sql, constants = _compiled(statement)
    with _autocommitting() as connection:
        return connection.execute(sql, constants | params).fetchone()


_COMPILED: dict[Select, tuple[str, dict]] = {}


def _compiled(statement: Select) -> tuple[str, dict]:
    """``statement`` as the driver's SQL (compiled once) and the values it binds itself."""
    found = _COMPILED.get(statement)
    if found is None:
        compiled = statement.compile(dialect=db.engine.dialect)
        found = _COMPILED.setdefault(statement, (str(compiled), dict(compiled.params)))
    return found


@contextmanager
def _autocommitting():
    """A pooled psycopg connection that commits each statement, back in the pool after."""
    pooled = db.engine.raw_connection()
    connection = pooled.driver_connection
    connection.autocommit = True
    try:
        yield connection
    finally:
        if connection.closed or connection.info.transaction_status != TransactionStatus.IDLE:
            pooled.invalidate()  # broken, or cut off mid-statement: not worth pooling again
        else:
            connection.autocommit = False
        pooled.close()


def one_or_not_found(query):
    """The one row a scoped query finds, or NotFound: another maker's object looks absent."""
    found = db.session.scalar(query)
    if found is None:
        raise NotFound()
    return found


def flush_unique(message: str) -> None:
    """Flush inside a savepoint; a UNIQUE violation (two tabs at once) becomes a clear error."""
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:
        raise InvalidInput(message) from None


def lease(candidates: Select, lease_column: InstrumentedAttribute, *, until: datetime) -> list:
    """Take the ids ``candidates`` selects for this worker until ``until``, and commit.

    On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets several workers split the rows: each takes
    ones nobody else is taking. The lease (``lease_column``) keeps them away from the next
    worker's query until it runs out, so a worker that died gives its rows back by itself.
    ``candidates`` must select the primary key and exclude rows under a lease.
    """
    if is_postgresql():
        candidates = candidates.with_for_update(skip_locked=True)
    ids = list(db.session.scalars(candidates))
    if ids:
        model = lease_column.class_
        db.session.execute(update(model).where(model.id.in_(ids)).values({lease_column.key: until}))
    db.session.commit()
    return ids

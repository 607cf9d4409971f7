"""What actually goes over the wire to PostgreSQL: libpq's own protocol trace.

SQLAlchemy's events only see statements sent through SQLAlchemy; the hold on the hot path goes
to the driver directly. ``statements_sent`` traces every connection the app checks out and
lists each statement the server was asked to run, however it was sent.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine

_MESSAGE_START = re.compile(r"\n(?=[FB]\t\d+\t)")
_FRONTEND = re.compile(r"F\t\d+\t(Query|Parse|Bind)\t (.*)", re.DOTALL)
_PARSE = re.compile(r'"(?P<name>[^"]*)" "(?P<sql>.*)" \d+(?: NNNN)*\s*$', re.DOTALL)
_BIND = re.compile(r'"[^"]*" "(?P<name>[^"]*)"')


@contextmanager
def statements_sent(engine: Engine) -> Iterator[list[str]]:
    """Yield a list that, after the block, holds every statement sent to the server: the text
    of simple queries (``BEGIN``, ``COMMIT``) and of each executed extended-protocol statement
    (or ``<prepared NAME>`` once psycopg prepared it)."""
    sent: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:

        def start(dbapi_connection, _record, _proxy) -> None:
            dbapi_connection.pgconn.trace(trace.fileno())
            dbapi_connection.pgconn.set_trace_flags(
                psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
            )

        def stop(dbapi_connection, _record) -> None:
            dbapi_connection.pgconn.untrace()

        event.listen(engine.pool, "checkout", start)
        event.listen(engine.pool, "checkin", stop)
        try:
            yield sent
        finally:
            event.remove(engine.pool, "checkout", start)
            event.remove(engine.pool, "checkin", stop)
        trace.seek(0)
        sent.extend(_statements(trace.read()))


def _statements(trace: str) -> list[str]:
    statements, parsed = [], None
    # One message per entry; a statement's text may span lines, a message never starts mid-text.
    for message in _MESSAGE_START.split(trace):
        found = _FRONTEND.match(message)
        if found is None:
            continue
        kind, rest = found.groups()
        if kind == "Query":
            statements.append(rest.strip().strip('"'))
        elif kind == "Parse":
            parse = _PARSE.match(rest)
            parsed = (parse.group("name"), parse.group("sql")) if parse else None
        else:  # Bind: one execution of the statement parsed last, or of a prepared one
            statement = _BIND.match(rest).group("name")
            if parsed is not None and parsed[0] == statement:
                statements.append(parsed[1])
            else:
                statements.append(f"<prepared {statement}>")
            parsed = None
    return [" ".join(s.split()) for s in statements]


@contextmanager
def recorded_statements(engine: Engine, *, commits: bool = False) -> Iterator[list[str]]:
    """Yield a list that collects every statement sent through SQLAlchemy in the block (not
    SQLite's ``BEGIN IMMEDIATE`` or savepoints, which are bookkeeping rather than queries),
    and with ``commits`` a ``"COMMIT"`` where each transaction ended."""
    recorded: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        if not statement.startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            recorded.append(statement)

    def committed(_conn) -> None:
        recorded.append("COMMIT")

    event.listen(engine, "before_cursor_execute", record)
    if commits:
        event.listen(engine, "commit", committed)
    try:
        yield recorded
    finally:
        event.remove(engine, "before_cursor_execute", record)
        if commits:
            event.remove(engine, "commit", committed)


def statements_of(engine: Engine):
    """``statements_sent`` on PostgreSQL (what reaches the server, the driver's own statements
    too), ``recorded_statements`` on SQLite."""
    on_postgresql = engine.dialect.name == "postgresql"
    return (statements_sent if on_postgresql else recorded_statements)(engine)

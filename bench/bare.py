"""The third ceiling: the least a buy can be — a hello-world endpoint plus the hold statement.

``gunicorn bench.bare:app`` — the design the inventory issue measures its target by ("a bare
Flask endpoint whose hold is ONE SQL statement"): a POST runs the hold statement of
``shop.inventory``, verbatim, through psycopg's RawCursor on a connection each thread keeps open in
autocommit (no pool, no SQLAlchemy), and answers 303 when it took the units, 409 when not. No
session cookie, no CSRF check, no rate-limit policy, no hooks: what the real buy costs beyond
this endpoint is what the shop itself adds; what this endpoint costs beyond hello-world is one
database round trip in a threaded server.

The buyer's id and session token come as form fields, where the real buy reads them from its
signed session cookie; the statement checks the token either way.

``POST /refuse/<batch_id>`` is the same ceiling for the sold-out answer: the reads a refusal
cannot skip and nothing else — one Redis MGET of the batch's room gate, its sold-out facts and
the buyer's mirrored claim (as ``waiting_room.before_buy``; ``REDIS_URL``, keys under
``RATELIMIT_KEY_PREFIX``), the claim statement of ``catalog.claimed_in_line`` through psycopg
only when the mirror is missing or not the token's (``claims.in_line``), and a fixed 409 body
the size of the shop's sold-out page.
"""

from __future__ import annotations

import functools
import os
import threading
from datetime import UTC, datetime, timedelta

import psycopg
from flask import Flask, redirect, request
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

from shop import catalog, claims, holds, page_cache, room_store
from shop.models.order import new_public_id
from testkit.databases import libpq_url

app = Flask(__name__)
_local = threading.local()

SOLD_OUT_BYTES = 4_400  # the shop's sold-out page, nav and all, is about this long
SOLD_OUT_PAGE = b"<!doctype html><title>Sold out</title>" + b" " * (SOLD_OUT_BYTES - 38)
_claim = catalog._CLAIMED_IN_LINE.compile(dialect=pg_dialect.dialect())
CLAIM_DRIVER, CLAIM_CONSTANTS = str(_claim), dict(_claim.params)


@functools.cache
def _shared() -> tuple[room_store.RedisStore, page_cache.RedisStore, claims.RedisMirrors]:
    """The waiting room's store, the page cache's and the claims' mirrors, in Redis as the shop
    keeps them."""
    prefix = os.environ.get("RATELIMIT_KEY_PREFIX")
    room = room_store.RedisStore(os.environ["REDIS_URL"], prefix or "smallbatch")
    pages = page_cache.RedisStore(room.client, page_cache.redis_prefix(prefix))
    return room, pages, claims.RedisMirrors(room.client, claims.redis_prefix(prefix))


def _connection() -> psycopg.Connection:
    connection = getattr(_local, "connection", None)
    if connection is None:
        url = libpq_url(os.environ["DATABASE_URL"])
        connection = _local.connection = psycopg.connect(url, autocommit=True)
    return connection


@app.post("/checkout/batches/<int:batch_id>")
def buy(batch_id: int):
    now = datetime.now(UTC)
    values = {
        "now": now,
        "customer_id": int(request.form["customer"]),
        "session_token": request.form["token"],
        "batch_id": batch_id,
        "quantity": int(request.form["quantity"]),
        "public_id": new_public_id(),
        "hold_expires_at": now + timedelta(minutes=int(os.environ["SHOP_HOLD_MINUTES"])),
        # No age or destination asked; a loopback client is on no network the caps count;
        # the hoarding rules at their defaults (config.py).
        "age": None,
        "birth_date": None,
        "ship_country": None,
        "network": None,
        "account_cap": 6,
        "network_cap": 40,
        "lapse_limit": 3,
        "lapse_since": now - timedelta(minutes=120),
    }
    cursor = psycopg.RawCursor(_connection())
    order_id = cursor.execute(holds.PG_HOLD_DRIVER, holds.driver_values(values)).fetchone()[-1]
    if order_id is None:
        return "not held", 409
    return redirect(f"/checkout/orders/{values['public_id']}/pay", 303)


@app.post("/refuse/<int:batch_id>")
def refuse(batch_id: int):
    room, pages, mirrors = _shared()  # the shop's own read: waiting_room.before_buy
    customer_id, token = int(request.form["customer"]), request.form["token"]
    _gate, (_gone, mirrored) = room.room_for_batch(
        batch_id,
        also=(pages.key(page_cache.nothing_left_name(batch_id)), mirrors.key(customer_id)),
    )
    if claims.mirrored_lines(mirrored, token) is not None:
        return SOLD_OUT_PAGE, 409
    claim = {"batch_id": batch_id, "id": customer_id, "token": token}
    if _connection().execute(CLAIM_DRIVER, CLAIM_CONSTANTS | claim).fetchone() is None:
        return "not signed in", 403
    return SOLD_OUT_PAGE, 409

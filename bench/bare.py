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
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta

import psycopg
from flask import Flask, redirect, request

from shop import holds
from shop.models.order import new_public_id
from testkit.databases import libpq_url

app = Flask(__name__)
_local = threading.local()


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

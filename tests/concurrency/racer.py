"""A separate process that races another one: ``python -m tests.concurrency.racer DATABASE_URL``.

It reads one JSON command per line on stdin, waits at a PostgreSQL advisory-lock barrier the test
holds (``pg_advisory_lock_shared(key)`` returns for every racer at the instant the test unlocks),
runs the action with its own app and connection, and prints one JSON line with the outcome:

- ``{"action": "sweep", "key": K}`` → ``sweeper.sweep(clock.now())``'s counts;
- ``{"action": "release", "key": K, "order_ids": [...]}`` → ``inventory.release`` each order
  (one transaction per order), the list of booleans;
- ``{"action": "confirm", "key": K, "order_ids": [...]}`` → ``inventory.confirm`` each order
  and commit, the list of booleans;
- ``{"action": "draws", "key": K}`` → the worker's draws job (``worker.run_draws``), its
  report lines.
- ``{"action": "offer", "key": K}`` → ``waitlist.offer_freed(clock.now())``'s counts.
"""

from __future__ import annotations

import json
import sys

from sqlalchemy import text

from shop import clock, inventory, sweeper, waitlist, worker
from shop.extensions import db
from shop.models import Order
from shop.models.order import EXPIRED
from testkit import databases


def wait_at_barrier(key: int) -> None:
    db.session.execute(text("SELECT pg_advisory_lock_shared(:key)"), {"key": key})
    db.session.execute(text("SELECT pg_advisory_unlock_shared(:key)"), {"key": key})
    db.session.commit()


def per_order(order_ids: list[int], change) -> list[bool]:
    outcomes = []
    for order_id in order_ids:
        order = db.session.get(Order, order_id)
        outcomes.append(bool(change(order)))
        db.session.commit()
    return outcomes


def run(command: dict) -> object:
    action = command["action"]
    if action == "sweep":
        return sweeper.sweep(clock.now())
    if action == "release":
        return per_order(
            command["order_ids"], lambda o: inventory.release(o, EXPIRED, now=clock.now())
        )
    if action == "confirm":
        return per_order(command["order_ids"], lambda o: inventory.confirm(o, now=clock.now()))
    if action == "draws":
        report = worker.Pass()
        worker.run_draws(clock.now(), report)
        return report.lines
    if action == "offer":
        offers = waitlist.offer_freed(clock.now())
        return {"offered": offers.offered, "settled": offers.settled, "closed": offers.closed}
    raise ValueError(f"unknown action {action!r}")


def main(database_url: str) -> None:
    app = databases.make_app(database_url)
    with app.app_context():
        db.session.execute(text("SELECT 1"))  # connect before the first barrier
        db.session.rollback()
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            wait_at_barrier(command["key"])
            try:
                result = {"result": run(command)}
            except Exception as error:  # reported to the test, which fails with it
                db.session.rollback()
                result = {"error": f"{type(error).__name__}: {error}"}
            print(json.dumps(result), flush=True)
        db.session.remove()
        db.engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1])

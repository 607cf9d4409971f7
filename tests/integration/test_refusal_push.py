"""Refusals counted with Redis (shop/refusal_counts.py): a refusal is an increment in the
process's memory, no round trip on the request that was refused; a thread moves the process's
counts into Redis every ``SHOP_REFUSALS_PUSH_SECONDS``, where every other process (the report's,
the worker's) finds them; counts Redis does not take wait in memory for the next push. On
SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from shop import refusal_counts
from shop.extensions import db
from shop.models import RefusalCount
from testkit import databases
from testkit.factories import make_batch
from tests.support import redis_server

PUSH = 0.2
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_overrides():
    with redis_server.shared_store("redis") as overrides:
        yield overrides | {"SHOP_REFUSALS_PUSH_SECONDS": PUSH}


def _in_redis(app, batch_id: int) -> dict[bytes, bytes]:
    with app.app_context():
        return refusal_counts._redis().hgetall(refusal_counts._key(batch_id))


def test_a_refusal_costs_no_round_trip_and_reaches_every_process_within_a_push(
    app, app_overrides, database_url
):
    batch_id = make_batch().id
    db.session.commit()
    another = databases.make_app(database_url, **app_overrides)  # another app process

    refusal_counts.count(batch_id, "sold_out")
    refusal_counts.count(batch_id, "sold_out")
    refusal_counts.count(batch_id, "limit_reached")

    assert _in_redis(app, batch_id) == {}  # nothing on the refused requests' way
    assert refusal_counts.totals([batch_id])[batch_id] == Counter(
        {"sold_out": 2, "limit_reached": 1}
    )  # this process's report sees its own at once
    deadline = time.monotonic() + PUSH * 10
    while not _in_redis(app, batch_id) and time.monotonic() < deadline:
        time.sleep(PUSH / 4)
    assert _in_redis(app, batch_id) == {b"sold_out": b"2", b"limit_reached": b"1"}
    with another.app_context():
        assert refusal_counts.totals([batch_id])[batch_id] == Counter(
            {"sold_out": 2, "limit_reached": 1}
        )
        db.session.remove()
        db.engine.dispose()
    assert refusal_counts.totals([batch_id])[batch_id]["sold_out"] == 2  # not counted twice


def test_counts_redis_does_not_take_wait_in_memory_and_are_never_lost(app):
    batch_id = make_batch().id
    db.session.commit()
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    app.extensions.pop("shop_refusals_redis", None)

    refusal_counts.count(batch_id, "sold_out")
    time.sleep(PUSH * 3)  # pushes tried, and failed

    assert refusal_counts.totals([batch_id])[batch_id] == Counter({"sold_out": 1})
    assert refusal_counts.flush() == 1  # the worker's pass stores what waits in memory
    stored = db.session.scalar(db.select(RefusalCount).where(RefusalCount.batch_id == batch_id))
    assert stored.count == 1


def test_a_process_that_exits_while_redis_is_down_stores_its_counts_in_the_table(app, database_url):
    batch_id = make_batch().id
    db.session.commit()
    script = (
        "from shop import refusal_counts\n"
        "from testkit import databases\n"
        f"app = databases.make_app({database_url!r}, REDIS_URL='redis://127.0.0.1:1/0',\n"
        "                          SHOP_REFUSALS_PUSH_SECONDS=60)\n"
        "with app.app_context():\n"
        f"    refusal_counts.count({batch_id}, 'sold_out')\n"
    )  # the next push is a minute away: only the exit moves the count

    subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60, capture_output=True
    )

    stored = db.session.scalar(db.select(RefusalCount).where(RefusalCount.batch_id == batch_id))
    assert stored is not None and stored.count == 1


def test_without_redis_a_process_stores_its_counts_every_flush(app):
    batch_id = make_batch().id
    db.session.commit()
    app.config["REDIS_URL"] = None
    app.config["SHOP_REFUSALS_FLUSH_SECONDS"] = PUSH

    refusal_counts.count(batch_id, "sold_out")

    deadline = time.monotonic() + PUSH * 10
    stored = None
    while stored is None and time.monotonic() < deadline:
        time.sleep(PUSH / 2)
        db.session.rollback()  # a fresh look at the table
        stored = db.session.scalar(db.select(RefusalCount).where(RefusalCount.batch_id == batch_id))
    assert stored is not None and stored.count == 1

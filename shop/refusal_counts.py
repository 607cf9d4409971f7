"""Refused buy attempts, counted per batch and reason without a database write per refusal.

Most of a drop's crowd is refused — sold out, over the limit, not live yet — and the buy request
must stay cheap for them, so a refusal is one increment in a counter in this process's memory,
never a row and not even a round trip:

- with ``REDIS_URL``, a thread of each app process moves its counts into Redis every
  ``SHOP_REFUSALS_PUSH_SECONDS`` (``HINCRBY`` on each batch's hash and ``SADD`` to the set of
  batches with news, one round trip for all of them), and at exit; a count Redis does not
  take stays in memory for the next push, so an outage slows and loses nothing. 0 pushes each
  refusal on its own request (tests);
- without, they stay in memory, and each process stores its own every
  ``SHOP_REFUSALS_FLUSH_SECONDS`` from a background thread, and at exit.

The worker (``flask shop worker``, the ``refusals`` job) moves Redis's counts into
``refusal_counts`` with one upsert per batch and reason. The report adds what is still waiting
to what is stored (:func:`totals`): at most a push behind for another process's refusals. Why
not the Prometheus counter of refusals (``shop_holds_total``): it has no batch label, and giving
it one would make every batch a new time series in every scrape, for ever.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable

import redis
from flask import Flask, current_app
from flask_limiter.errors import RateLimitExceeded
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from shop.errors import ShopError
from shop.extensions import db
from shop.models import Batch, RefusalCount

log = logging.getLogger(__name__)

# The reasons counted: the error codes the buy view answers with (``shop/errors.py``) and a
# rate limit's. Anything else (an unknown batch, a rotated session) is not a drop's refusal.
REASONS = (
    "sold_out",
    "limit_reached",
    "drop_cap_reached",
    "network_cap_reached",
    "cooling_off",
    "drop_not_live",
    "age_restricted",
    "cannot_ship_there",
    "email_not_verified",
    "invalid_quantity",
    "too_many_requests",
)
REDIS_TIMEOUT = 0.25  # seconds: a refusal is never held up longer by a slow Redis

# Take a batch's counts and forget them, atomically: a refusal counted meanwhile lands in a
# fresh hash and set entry, for the next flush.
_TAKE = """
local counts = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return counts
"""

Key = tuple[int, str]  # (batch id, reason)


class _Memory:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[Key] = Counter()

    def add(self, counts: Iterable[tuple[Key, int]]) -> None:
        with self._lock:
            for key, n in counts:
                self._counts[key] += n

    def peek(self, batch_ids: set[int]) -> Counter[Key]:
        with self._lock:
            return Counter({k: n for k, n in self._counts.items() if k[0] in batch_ids})

    def take(self) -> Counter[Key]:
        with self._lock:
            taken, self._counts = self._counts, Counter()
            return taken


def _memory(app: Flask | None = None) -> _Memory:
    """This app's counts in this process's memory (each app its own: tests make many)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    return app.extensions.setdefault("shop_refusals_memory", _Memory())


# --- counting (the buy view) ---------------------------------------------------------------


def counts_refusals(view):
    """Count each refusal of a view taking ``batch_id`` by its reason, and let the error go on
    to the one place that answers it."""

    @functools.wraps(view)
    def counted(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except ShopError as error:
            count(kwargs.get("batch_id"), error.code)
            raise
        except RateLimitExceeded:
            count(kwargs.get("batch_id"), "too_many_requests")
            raise

    return counted


def count(batch_id: int | None, reason: str) -> None:
    """One refusal of ``batch_id`` for ``reason``: an increment in this process's memory, on
    its way to Redis (``_push``) or the table (``_start_flusher``)."""
    if batch_id is None or reason not in REASONS:
        return
    _memory().add([((batch_id, reason), 1)])
    if _redis() is None:
        _start_flusher()
    elif not current_app.config.get("SHOP_REFUSALS_PUSH_SECONDS"):
        _push(current_app._get_current_object())  # type: ignore[attr-defined]
    else:
        _start_pusher()


# --- reading (the report) ------------------------------------------------------------------


def totals(batch_ids: Iterable[int]) -> dict[int, Counter[str]]:
    """Refusals per batch and reason: what is stored plus what waits in Redis and in this
    process's memory (another process's memory shows after its next flush)."""
    ids = set(batch_ids)
    found: dict[int, Counter[str]] = {batch_id: Counter() for batch_id in ids}
    if not ids:
        return found
    for batch_id, reason, n in db.session.execute(
        select(RefusalCount.batch_id, RefusalCount.reason, RefusalCount.count).where(
            RefusalCount.batch_id.in_(ids)
        )
    ):
        found[batch_id][reason] += n
    for (batch_id, reason), n in _pending(ids).items():
        found[batch_id][reason] += n
    return found


def _pending(ids: set[int]) -> Counter[Key]:
    client = _redis()
    if client is None:
        return _memory().peek(ids)
    with _pushing():  # a push's counts in memory or in Redis, not between
        pending = _memory().peek(ids)
        ordered = sorted(ids)
        try:
            pipe = client.pipeline(transaction=False)
            for batch_id in ordered:
                pipe.hgetall(_key(batch_id))
            for batch_id, counts in zip(ordered, pipe.execute(), strict=True):
                for reason, n in counts.items():
                    pending[(batch_id, reason.decode())] += int(n)
        except RedisError:
            log.warning("could not read the refusals waiting in Redis; showing the stored ones")
    return pending


# --- flushing (the worker) -----------------------------------------------------------------


def flush() -> int:
    """Move the counts waiting in Redis and in this process's memory into ``refusal_counts``,
    committing; returns how many refusals were moved. Counts for batches that do not exist
    (a made-up id) are dropped. If the database refuses, the counts go back where they were."""
    moved = 0
    client = _redis()
    if client is not None:
        try:
            moved += _flush_redis(client)
        except RedisError:
            log.warning("could not read the refusals waiting in Redis; the next pass will")
    memory = _memory()
    with _pushing():  # not while a push holds them between memory and Redis
        taken = memory.take()
    if taken:
        try:
            moved += _store(taken)
        except Exception:
            memory.add(taken.items())
            raise
    return moved


def _flush_redis(client: redis.Redis) -> int:
    take = client.register_script(_TAKE)
    moved = 0
    for member in client.smembers(_dirty()):
        batch_id = int(member)
        raw = take(keys=[_key(batch_id), _dirty()], args=[batch_id])
        counts = Counter(
            {(batch_id, raw[i].decode()): int(raw[i + 1]) for i in range(0, len(raw), 2)}
        )
        if not counts:
            continue
        try:
            moved += _store(counts)
        except Exception:
            _give_back(client, counts)
            raise
    return moved


def _add_to_redis(client: redis.Redis, counts: Counter[Key]) -> None:
    """``counts`` added to the batches' hashes and their ids to the set with news, in one
    round trip."""
    pipe = client.pipeline(transaction=False)
    for (batch_id, reason), n in counts.items():
        pipe.hincrby(_key(batch_id), reason, n)
        pipe.sadd(_dirty(), batch_id)
    pipe.execute()


def _give_back(client: redis.Redis, counts: Counter[Key]) -> None:
    try:
        _add_to_redis(client, counts)
    except RedisError:
        log.error(
            "lost %d refusal counts: neither the database nor Redis took them back",
            sum(counts.values()),
        )


def _store(counts: Counter[Key]) -> int:
    """Add ``counts`` to the table, one upsert per (batch, reason), and commit."""
    batch_ids = {batch_id for batch_id, _ in counts}
    known = set(db.session.scalars(select(Batch.id).where(Batch.id.in_(batch_ids))))
    rows = [
        {"batch_id": batch_id, "reason": reason, "count": n}
        for (batch_id, reason), n in sorted(counts.items())
        if batch_id in known and n > 0
    ]
    if rows:
        dialect = db.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(RefusalCount)
        db.session.execute(
            statement.on_conflict_do_update(
                index_elements=["batch_id", "reason"],
                set_={"count": RefusalCount.count + statement.excluded.count},
            ),
            rows,
        )
    db.session.commit()
    return sum(row["count"] for row in rows)


# --- this process's pusher, with Redis ----------------------------------------------------


def _start_pusher() -> None:
    """Move this process's counts into Redis every ``SHOP_REFUSALS_PUSH_SECONDS``, and when
    the process exits (what Redis then would not take goes to the table)."""
    _every(
        "pusher",
        current_app.config["SHOP_REFUSALS_PUSH_SECONDS"],
        _push,
        at_exit=lambda app: (_push(app), _flush_memory(app)),
    )


def _push(app: Flask) -> None:
    """This process's counts into Redis in one round trip; kept for the next push when Redis
    does not take them."""
    with app.app_context(), _pushing():
        memory = _memory(app)
        taken = memory.take()
        client = _redis()
        if not taken or client is None:
            return
        try:
            _add_to_redis(client, taken)
        except RedisError:
            memory.add(taken.items())
            log.warning("could not move %d refusal counts to Redis; keeping them", len(taken))


def _pushing() -> threading.Lock:
    """Held while counts move from memory to Redis, and while the report reads both."""
    return current_app.extensions.setdefault("shop_refusals_pushing", threading.Lock())


# --- this process's flusher, when it counts in memory --------------------------------------


def _start_flusher() -> None:
    """Without Redis each app process keeps its own counts: flush them every
    ``SHOP_REFUSALS_FLUSH_SECONDS`` (0: only the worker and the report's own process see them,
    as in tests) and when the process exits."""
    seconds = current_app.config.get("SHOP_REFUSALS_FLUSH_SECONDS") or 0
    if seconds > 0:
        _every("flusher", seconds, _flush_memory, at_exit=_flush_memory)


def _every(
    name: str,
    seconds: float,
    work: Callable[[Flask], object],
    *,
    at_exit: Callable[[Flask], object],
) -> None:
    """``work(app)`` every ``seconds`` from a daemon thread, and ``at_exit(app)`` when the
    process exits: started once per app and process (a forked process starts its own), and
    ended with the app (held weakly: tests make many)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    started = f"shop_refusals_{name}"
    if app.extensions.get(started) == os.getpid():
        return
    app.extensions[started] = os.getpid()
    stop = threading.Event()
    held = weakref.ref(app)

    def loop() -> None:
        while not stop.wait(seconds) and (found := held()) is not None:
            work(found)

    def last() -> None:
        stop.set()
        if (found := held()) is not None:
            at_exit(found)

    threading.Thread(target=loop, name=f"refusals-{name}", daemon=True).start()
    atexit.register(last)


def _flush_memory(app: Flask) -> None:
    with app.app_context():
        memory = _memory(app)
        taken = memory.take()
        try:
            if taken:
                _store(taken)
        except Exception:
            memory.add(taken.items())
            log.exception("could not store refusal counts; keeping them for the next try")
        finally:
            db.session.remove()


# --- Redis -----------------------------------------------------------------------------------


def _redis() -> redis.Redis | None:
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    clients = current_app.extensions.setdefault("shop_refusals_redis", {})
    if url not in clients:
        clients[url] = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
    return clients[url]


def _prefix() -> str:
    return current_app.config.get("RATELIMIT_KEY_PREFIX") or "smallbatch"


def _key(batch_id: int) -> str:
    return f"{_prefix()}/refusals/batch/{batch_id}"


def _dirty() -> str:
    return f"{_prefix()}/refusals/dirty"

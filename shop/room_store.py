"""Where a drop's waiting line is kept: Redis (two Lua scripts, so every step is atomic and
shared by every app process) or this process's memory (the same rules under a lock). The rules
they carry out are explained in ``shop/waiting_room.py``."""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

import redis
from flask import current_app
from redis.exceptions import RedisError

from shop.models.drop import ROOM_AUTO

log = logging.getLogger(__name__)

ARRIVAL_WINDOW = 10  # seconds over which arrivals are counted for the automatic room
REDIS_TIMEOUT = 1.0


@dataclass(frozen=True)
class Turn:
    """Where one account stands in a drop's line after a visit."""

    place: int
    served: int  # every place up to this one has been called
    admitted_until: int  # epoch ms the pass to buy runs to; 0 while waiting
    requeued: bool  # their turn had come and gone (or their cookie was bad): a new place
    ahead: int  # visitors waiting before this one
    waiting: int  # everyone waiting
    called: int  # visitors called who have not held yet

    @property
    def admitted(self) -> bool:
        return self.place <= self.served and self.admitted_until > 0


# --- the stores ------------------------------------------------------------------------------


def for_app() -> Store:
    """This app's line store: Redis with ``REDIS_URL``, else this process's memory."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    store = app.extensions.get("shop_waiting_room")
    if store is None:
        url = app.config.get("REDIS_URL")
        prefix = app.config.get("RATELIMIT_KEY_PREFIX") or "smallbatch"
        store = RedisStore(url, prefix) if url else MemoryStore()
        app.extensions["shop_waiting_room"] = store
    return store


class Store:
    def arrive(
        self, drop_id: int, batch_ids: list[int], *, mode: str, threshold: int, now_ms: int
    ) -> bool:
        raise NotImplementedError

    def room_for_batch(
        self, batch_id: int, *, also: tuple[str | None, ...] = ()
    ) -> tuple[int | None, tuple[bytes | None, ...]]:
        """The drop whose open room guards the batch (or None), and the raw values of the keys
        ``also`` of the same Redis — other stores', read in the same round trip (None for a
        key that is None, and for every key without Redis)."""
        raise NotImplementedError

    def visit(
        self,
        drop_id: int,
        customer_id: int,
        *,
        batch_ids: list[int],
        mode: str,
        threshold: int,
        **kwargs,
    ) -> Turn | None:
        """The visit counts as an arrival (``arrive``) and then moves the line on, in one step.
        None when the room is not open or the line cannot be reached (the visitor then gets
        the drop page)."""
        raise NotImplementedError

    def turn_used(self, drop_id: int, customer_id: int, *, until_ms: int) -> None:
        raise NotImplementedError

    def waiting(self, drop_id: int) -> int:
        raise NotImplementedError

    def close(self, drop_id: int, batch_ids: list[int]) -> None:
        raise NotImplementedError


# Open the room for a drop: for good when the maker says so, or once arrivals in this window
# pass the threshold. Takes the KEYS indexes of the on flag, the arrivals counter and the first
# of the batches' gate keys (the rest of KEYS).
_ARRIVE_FUNCTION = """
local function arrive(on, arrivals, first_gate, mode, threshold, window, drop)
  if redis.call('EXISTS', KEYS[on]) == 1 then return true end
  if mode == 'auto' then
    local n = redis.call('INCR', KEYS[arrivals])
    if n == 1 then redis.call('EXPIRE', KEYS[arrivals], tonumber(window) * 2) end
    if n <= tonumber(threshold) then return false end
  end
  redis.call('SET', KEYS[on], mode)
  for i = first_gate, #KEYS do redis.call('SET', KEYS[i], drop) end
  return true
end
"""

# KEYS: on flag, arrivals counter, then one gate key per batch.
_ARRIVE = (
    _ARRIVE_FUNCTION
    + """
if arrive(1, 2, 3, ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 1 end
return 0
"""
)

# One visit: find or take the place (back of the line if asked, or if the pass lapsed), move
# the line on by min(tokens, free units - called visitors who have not held), report.
# KEYS: line (account -> place), seq, served, passes (account -> pass deadline),
# called (account -> turn deadline), tick (token bucket), then the arrival's keys (as _ARRIVE's):
# the visit counts as an arrival first, and an empty answer means the room is not open.
_VISIT = (
    _ARRIVE_FUNCTION
    + """
if not arrive(7, 8, 9, ARGV[9], ARGV[10], ARGV[11], ARGV[12]) then return {} end
local user, now = ARGV[1], tonumber(ARGV[2])
local free, rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local turn_ms, pass_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local served = tonumber(redis.call('GET', KEYS[3]) or '0')
local place = redis.call('ZSCORE', KEYS[1], user)
local requeued = 0
if place then
  place = tonumber(place)
  local deadline = tonumber(redis.call('ZSCORE', KEYS[4], user) or '0')
  if ARGV[8] == '1' or (place <= served and deadline <= now) then
    redis.call('ZREM', KEYS[1], user)
    redis.call('ZREM', KEYS[4], user)
    redis.call('ZREM', KEYS[5], user)
    place = nil
    requeued = 1
  end
elseif ARGV[8] == '1' then
  requeued = 1
end
if not place then
  place = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], place, user)
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local called = redis.call('ZCARD', KEYS[5])
local tick = redis.call('HMGET', KEYS[6], 'at', 'tokens')
local at = tonumber(tick[1]) or now
local tokens = tonumber(tick[2]) or burst
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local n = math.min(math.floor(tokens), free - called)
if n > 0 then
  local next = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. served, '+inf',
    'WITHSCORES', 'LIMIT', 0, n)
  for i = 1, #next, 2 do
    redis.call('ZADD', KEYS[5], now + turn_ms, next[i])
    redis.call('ZADD', KEYS[4], now + pass_ms, next[i])
    served = tonumber(next[i + 1])
  end
  tokens = tokens - #next / 2
  called = called + #next / 2
  redis.call('SET', KEYS[3], served)
end
redis.call('HSET', KEYS[6], 'at', now, 'tokens', tostring(tokens))
local until_ms = 0
local ahead = 0
if place <= served then
  until_ms = tonumber(redis.call('ZSCORE', KEYS[4], user) or '0')
else
  ahead = redis.call('ZCOUNT', KEYS[1], '(' .. served, '(' .. place)
end
local waiting = redis.call('ZCOUNT', KEYS[1], '(' .. served, '+inf')
return {place, served, until_ms, requeued, ahead, waiting, called}
"""
)


class RedisStore(Store):
    """The line in Redis, shared by every app process and kept across restarts."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
        self.prefix = f"{prefix}/room"
        self._arrive = self.client.register_script(_ARRIVE)
        self._visit = self.client.register_script(_VISIT)

    def _key(self, drop_id: int, name: str) -> str:
        return f"{self.prefix}/{drop_id}/{name}"

    def _gate(self, batch_id: int) -> str:
        return f"{self.prefix}/batch/{batch_id}"

    def _line_keys(self, drop_id: int) -> list[str]:
        return [
            self._key(drop_id, name)
            for name in ("line", "seq", "served", "passes", "called", "tick")
        ]

    def _arrival_keys(self, drop_id: int, batch_ids: list[int], now_ms: int) -> list[str]:
        window = (now_ms // 1000) // ARRIVAL_WINDOW
        return [
            self._key(drop_id, "on"),
            self._key(drop_id, f"arrivals/{window}"),
            *(self._gate(b) for b in batch_ids),
        ]

    def arrive(self, drop_id, batch_ids, *, mode, threshold, now_ms) -> bool:
        keys = self._arrival_keys(drop_id, batch_ids, now_ms)
        try:
            return bool(self._arrive(keys=keys, args=[mode, threshold, ARRIVAL_WINDOW, drop_id]))
        except RedisError:
            log.warning("the waiting room could not reach Redis; the drop page is served")
            return False

    def room_for_batch(self, batch_id, *, also=()):
        asked = [name for name in also if name is not None]
        try:
            values = self.client.mget([self._gate(batch_id), *asked])
        except RedisError:
            log.warning("the waiting room could not reach Redis; the buy goes ahead")
            return None, (None,) * len(also)
        found = iter(values[1:])
        gate = values[0]
        return (int(gate) if gate else None), tuple(
            None if name is None else next(found) for name in also
        )

    def visit(self, drop_id, customer_id, *, batch_ids, mode, threshold, **kw) -> Turn | None:
        try:
            raw = self._visit(
                keys=self._line_keys(drop_id)
                + self._arrival_keys(drop_id, batch_ids, kw["now_ms"]),
                args=[
                    customer_id,
                    kw["now_ms"],
                    kw["free"],
                    kw["rate"],
                    kw["burst"],
                    kw["turn_ms"],
                    kw["pass_ms"],
                    "1" if kw["requeue"] else "0",
                    mode,
                    threshold,
                    ARRIVAL_WINDOW,
                    drop_id,
                ],
            )
        except RedisError:
            log.warning("the waiting room could not reach Redis; the visitor goes to the drop")
            return None
        if not raw:
            return None
        place, served, until_ms, requeued, ahead, waiting_now, called = (int(v) for v in raw)
        return Turn(place, served, until_ms, bool(requeued), ahead, waiting_now, called)

    def turn_used(self, drop_id, customer_id, *, until_ms: int) -> None:
        try:  # only ever shortens a slot still running (XX: exists, LT: lower)
            self.client.zadd(
                self._key(drop_id, "called"), {str(customer_id): until_ms}, xx=True, lt=True
            )
        except RedisError:
            log.warning("the waiting room could not reach Redis; a turn lapses on its own")

    def waiting(self, drop_id) -> int:
        try:
            served = int(self.client.get(self._key(drop_id, "served")) or 0)
            return int(self.client.zcount(self._key(drop_id, "line"), f"({served}", "+inf"))
        except RedisError:
            log.warning("the waiting room could not reach Redis to count the line")
            return 0

    def close(self, drop_id, batch_ids) -> None:
        try:
            self.client.delete(
                self._key(drop_id, "on"),
                *self._line_keys(drop_id),
                *(self._gate(b) for b in batch_ids),
            )
        except RedisError:
            log.error("could not close drop %s's waiting room in Redis; try again", drop_id)


class _Line:
    def __init__(self) -> None:
        self.places: dict[int, int] = {}
        self.seq = 0
        self.served = 0
        self.passes: dict[int, int] = {}
        self.called: dict[int, int] = {}
        self.at: int | None = None
        self.tokens: float | None = None


class MemoryStore(Store):
    """The same rules in this process's memory (no REDIS_URL: one process, as in ``make run``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._on: set[int] = set()
        self._gates: dict[int, int] = {}
        self._arrivals: dict[tuple[int, int], int] = {}
        self._lines: dict[int, _Line] = {}

    def arrive(self, drop_id, batch_ids, *, mode, threshold, now_ms) -> bool:
        with self._lock:
            if drop_id in self._on:
                return True
            if mode == ROOM_AUTO:
                window = (now_ms // 1000) // ARRIVAL_WINDOW
                self._arrivals = {k: n for k, n in self._arrivals.items() if k[1] >= window - 1}
                n = self._arrivals.get((drop_id, window), 0) + 1
                self._arrivals[(drop_id, window)] = n
                if n <= threshold:
                    return False
            self._on.add(drop_id)
            self._gates.update({b: drop_id for b in batch_ids})
            return True

    def room_for_batch(self, batch_id, *, also=()):
        return self._gates.get(batch_id), (None,) * len(also)

    def visit(self, drop_id, customer_id, *, batch_ids, mode, threshold, **kw) -> Turn | None:
        if not self.arrive(drop_id, batch_ids, mode=mode, threshold=threshold, now_ms=kw["now_ms"]):
            return None
        now = kw["now_ms"]
        with self._lock:
            line = self._lines.setdefault(drop_id, _Line())
            place = line.places.get(customer_id)
            requeued = bool(kw["requeue"])
            if place is not None and (
                kw["requeue"] or (place <= line.served and line.passes.get(customer_id, 0) <= now)
            ):
                del line.places[customer_id]
                line.passes.pop(customer_id, None)
                line.called.pop(customer_id, None)
                place, requeued = None, True
            if place is None:
                line.seq += 1
                place = line.places[customer_id] = line.seq
            line.called = {u: t for u, t in line.called.items() if t > now}
            at = line.at if line.at is not None else now
            tokens = line.tokens if line.tokens is not None else kw["burst"]
            tokens = min(kw["burst"], tokens + max(0, now - at) * kw["rate"] / 1000)
            n = min(math.floor(tokens), kw["free"] - len(line.called))
            if n > 0:
                behind = sorted((p, u) for u, p in line.places.items() if p > line.served)[:n]
                for p, u in behind:
                    line.called[u] = now + kw["turn_ms"]
                    line.passes[u] = now + kw["pass_ms"]
                    line.served = p
                tokens -= len(behind)
            line.at, line.tokens = now, tokens
            waiting_places = [p for p in line.places.values() if p > line.served]
            admitted = place <= line.served
            return Turn(
                place=place,
                served=line.served,
                admitted_until=line.passes.get(customer_id, 0) if admitted else 0,
                requeued=requeued,
                ahead=0 if admitted else sum(1 for p in waiting_places if p < place),
                waiting=len(waiting_places),
                called=len(line.called),
            )

    def turn_used(self, drop_id, customer_id, *, until_ms: int) -> None:
        with self._lock:
            line = self._lines.get(drop_id)
            if line is not None and customer_id in line.called:
                line.called[customer_id] = min(line.called[customer_id], until_ms)

    def waiting(self, drop_id) -> int:
        with self._lock:
            line = self._lines.get(drop_id)
            if line is None:
                return 0
            return sum(1 for p in line.places.values() if p > line.served)

    def close(self, drop_id, batch_ids) -> None:
        with self._lock:
            self._on.discard(drop_id)
            self._lines.pop(drop_id, None)
            for batch_id in batch_ids:
                self._gates.pop(batch_id, None)

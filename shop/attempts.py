"""Attempts counted before the work, and given back when the work shows they don't count.

A failed login must be counted *before* its password is checked: counted after the answer (as
Flask-Limiter's ``deduct_when`` does), a burst of parallel guesses all pass the check together
and the limit lets through several times its number. Yet a correct password must use nothing
up. So :func:`reserve` takes a place in every window of every key at once — or in none, and
raises :class:`~shop.errors.TooManyAttempts` — and :meth:`Reservation.give_back` returns it.

Each key is a sorted set of reservations (score: the time, member: a random id) in the rate-limit
storage, so every app process shares the count: Redis when Flask-Limiter counts in Redis (one Lua
script checks and reserves atomically), else this process's memory. A Redis outage falls back to
memory as Flask-Limiter does (``RATELIMIT_IN_MEMORY_FALLBACK_ENABLED``).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass

from flask import current_app
from limits import parse_many
from limits.storage import RedisStorage
from redis.exceptions import RedisError

from shop.errors import TooManyAttempts
from shop.extensions import limiter

log = logging.getLogger(__name__)

# KEYS: the counted keys. ARGV: now, the reservation's id, then per key the number of its
# windows followed by (seconds, amount) for each. Returns "0" when reserved in every key, else
# the seconds until a place frees up in the fullest window (nothing reserved then).
_RESERVE = """
local now = tonumber(ARGV[1])
local at = 3
local wait = 0
local longest = {}
for i, key in ipairs(KEYS) do
  local windows = tonumber(ARGV[at])
  at = at + 1
  longest[i] = 1
  for _ = 1, windows do
    local seconds, amount = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
    at = at + 2
    longest[i] = math.max(longest[i], seconds)
    local since = '(' .. tostring(now - seconds)
    local count = redis.call('ZCOUNT', key, since, '+inf')
    if count >= amount then
      local freed = redis.call('ZRANGEBYSCORE', key, since, '+inf', 'WITHSCORES', 'LIMIT',
        count - amount, 1)
      wait = math.max(wait, tonumber(freed[2]) + seconds - now)
    end
  end
end
if wait > 0 then
  return tostring(wait)
end
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - longest[i])
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('EXPIRE', key, math.ceil(longest[i]))
end
return '0'
"""


@dataclass(frozen=True)
class Counted:
    """One key counted under ``limit`` (Flask-Limiter's notation, e.g. "30 per minute; 300 per
    hour"), named by ``scope`` so that keys of different policies never meet."""

    scope: str
    key: str
    limit: str


Windows = list[tuple[int, int]]  # (seconds, amount)


class Reservation:
    """Places taken in some keys; :meth:`give_back` returns them (at most once)."""

    def __init__(self, store: _Store | None, keys: list[str], member: str) -> None:
        self._store = store
        self._keys = keys
        self._member = member

    def give_back(self) -> None:
        store, self._store = self._store, None
        if store is None:
            return
        try:
            store.give_back(self._keys, self._member)
        except RedisError:
            # The place expires with its window; a customer is at worst counted once too often.
            log.warning("could not give back a counted attempt", exc_info=True)


def reserve(counted: list[Counted]) -> Reservation:
    """A place in every window of every key, or TooManyAttempts (nothing taken) saying when to
    come back. Does nothing while rate limiting is off (``RATELIMIT_ENABLED``)."""
    config = current_app.config
    if not config.get("RATELIMIT_ENABLED", True) or not counted:
        return Reservation(None, [], "")
    prefix = config.get("RATELIMIT_KEY_PREFIX") or ""
    keys = [f"{prefix}/attempts/{c.scope}/{c.key}" for c in counted]
    plans = [_windows(c.limit) for c in counted]
    member = secrets.token_hex(8)
    store = _store()
    try:
        wait = store.reserve(keys, plans, member, time.time())
    except RedisError:
        if not config.get("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"):
            if config.get("RATELIMIT_SWALLOW_ERRORS"):
                log.exception("could not count an attempt; letting it through")
                return Reservation(None, [], "")
            raise
        log.warning("rate-limit storage unreachable: counting attempts in memory")
        store = _MEMORY
        wait = store.reserve(keys, plans, member, time.time())
    if wait > 0:
        raise TooManyAttempts(retry_after=max(1, math.ceil(wait)))
    return Reservation(store, keys, member)


def _windows(limit: str) -> Windows:
    return [(item.get_expiry(), item.amount) for item in parse_many(limit)]


class _Store:
    def reserve(self, keys: list[str], plans: list[Windows], member: str, now: float) -> float:
        raise NotImplementedError

    def give_back(self, keys: list[str], member: str) -> None:
        raise NotImplementedError


class _RedisStore(_Store):
    def __init__(self, storage: RedisStorage) -> None:
        self._storage = storage
        self._client = storage.get_connection()

    def reserve(self, keys: list[str], plans: list[Windows], member: str, now: float) -> float:
        args: list[object] = [repr(now), member]
        for windows in plans:
            args.append(len(windows))
            for seconds, amount in windows:
                args += [seconds, amount]
        script = self._client.register_script(_RESERVE)
        return float(script(keys=[self._storage.prefixed_key(k) for k in keys], args=args))

    def give_back(self, keys: list[str], member: str) -> None:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.zrem(self._storage.prefixed_key(key), member)
        pipe.execute()


class _MemoryStore(_Store):
    """The same rule in this process's memory (development, or Redis unreachable)."""

    _PRUNE_EVERY = 1000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[int, dict[str, float]]] = {}  # key -> (longest, entries)
        self._calls = 0

    def reserve(self, keys: list[str], plans: list[Windows], member: str, now: float) -> float:
        with self._lock:
            self._calls += 1
            if self._calls % self._PRUNE_EVERY == 0:
                self._prune(now)
            wait = 0.0
            for key, windows in zip(keys, plans, strict=True):
                entries = self._keys.get(key, (0, {}))[1]
                for seconds, amount in windows:
                    times = sorted(t for t in entries.values() if t > now - seconds)
                    if len(times) >= amount:
                        wait = max(wait, times[len(times) - amount] + seconds - now)
            if wait > 0:
                return wait
            for key, windows in zip(keys, plans, strict=True):
                longest = max(seconds for seconds, _ in windows)
                old = self._keys.get(key, (0, {}))[1]
                entries = {m: t for m, t in old.items() if t > now - longest}
                entries[member] = now
                self._keys[key] = (longest, entries)
            return 0.0

    def give_back(self, keys: list[str], member: str) -> None:
        with self._lock:
            for key in keys:
                found = self._keys.get(key)
                if found is not None:
                    found[1].pop(member, None)

    def _prune(self, now: float) -> None:
        for key, (longest, entries) in list(self._keys.items()):
            if not any(t > now - longest for t in entries.values()):
                del self._keys[key]


_MEMORY = _MemoryStore()


def _store() -> _Store:
    storage = limiter.storage if limiter.enabled else None
    if isinstance(storage, RedisStorage):
        return _RedisStore(storage)
    return _MEMORY

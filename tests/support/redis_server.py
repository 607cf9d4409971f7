"""Redis for the tests that need shared rate-limit storage.

Redis comes from ``TEST_REDIS_URL`` (default: the local server, database 15). When it is
unreachable a local run skips what needs it and says so; under CI (``CI=true``) that is a failure,
never a skip. Each test counts under a key prefix of its own and deletes only those keys, so tests
in parallel workers (and anything else in that database) never see each other's counters.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from testkit import databases

DEFAULT_URL = "redis://127.0.0.1:6379/15"


def redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL") or DEFAULT_URL


def redis_unavailable_reason() -> str | None:
    url = redis_url()
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as error:
        return (
            f"Redis is not reachable at {url} ({error}). Start it or set TEST_REDIS_URL to run "
            "the rate-limit tests against shared storage."
        )
    return None


def require_redis() -> None:
    """Skip locally, fail under CI, when Redis cannot be reached."""
    databases.require("Redis", redis_unavailable_reason())


@contextmanager
def private_prefix(label: str = "smallbatch-test") -> Iterator[str]:
    """A fresh key prefix; every key containing it is deleted afterwards."""
    require_redis()
    prefix = f"{label}-{secrets.token_hex(6)}"
    try:
        yield prefix
    finally:
        delete_keys(prefix)


@contextmanager
def shared_store(kind: str) -> Iterator[dict[str, str]]:
    """App overrides for what the app shares between its processes (page cache, rate limits,
    counters): ``"memory"`` keeps it in the process, ``"redis"`` in Redis under a private
    prefix, deleted afterwards."""
    if kind == "memory":
        yield {}
        return
    with private_prefix() as prefix:
        yield {"REDIS_URL": redis_url(), "RATELIMIT_KEY_PREFIX": prefix}


@contextmanager
def commands_sent(prefix: str) -> Iterator[list[str]]:
    """The commands naming ``prefix`` that Redis received while the block ran (MONITOR), each
    as a line (``MGET key …``); the list is filled when the block ends."""
    end = f"end-{secrets.token_hex(6)}"
    client = redis.Redis.from_url(redis_url())
    seen: list[str] = []
    try:
        with client.monitor() as monitor:
            yield seen
            client.echo(end)  # Redis buffers what MONITOR saw; read up to this mark
            while end not in (line := monitor.next_command()["command"]):
                if prefix in line:
                    seen.append(line)
    finally:
        client.close()


def keys_with(prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url())
    try:
        return list(client.scan_iter(match=f"*{prefix}*", count=500))
    finally:
        client.close()


def delete_keys(prefix: str) -> None:
    client = redis.Redis.from_url(redis_url())
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()

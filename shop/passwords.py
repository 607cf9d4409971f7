"""Password hashing with Argon2id; parameters come from settings (strong outside tests).

Each hash costs 64 MiB and tens of milliseconds of a core, so a process runs at most
``SHOP_PASSWORD_CONCURRENCY`` of them at once: a flood of logins or registrations queues for a
slot (for at most ``SHOP_PASSWORD_WAIT_SECONDS``, then PasswordWorkBusy, a 503) instead of
taking every core and the memory the crowd's pages need.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app

from shop.errors import PasswordWorkBusy

MIN_LENGTH = 8
MAX_LENGTH = 128

# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_PASSWORD = "not-a-real-password"  # noqa: S105 - never a password  # nosec B105


_SLOTS = "shop.password_slots"


def init_app(app: Flask) -> None:
    """This process's hashing slots (no I/O; each forked worker gets its own full set)."""
    slots = int(app.config.get("SHOP_PASSWORD_CONCURRENCY") or 0)
    if slots < 1:
        raise RuntimeError("SHOP_PASSWORD_CONCURRENCY must be at least 1")
    app.extensions[_SLOTS] = threading.BoundedSemaphore(slots)


@contextmanager
def hashing_slot() -> Iterator[None]:
    """One of this process's slots for Argon2 work, or PasswordWorkBusy when none frees up in
    time (nothing was hashed, so nothing changed)."""
    slots: threading.BoundedSemaphore = current_app.extensions[_SLOTS]
    if not slots.acquire(timeout=float(current_app.config["SHOP_PASSWORD_WAIT_SECONDS"])):
        raise PasswordWorkBusy()
    try:
        yield
    finally:
        slots.release()


def _hasher() -> PasswordHasher:
    config = current_app.config
    return PasswordHasher(
        time_cost=config["SHOP_PASSWORD_TIME_COST"],
        memory_cost=config["SHOP_PASSWORD_MEMORY_COST"],
        parallelism=config["SHOP_PASSWORD_PARALLELISM"],
        type=Type.ID,
    )


def hash_password(password: str) -> str:
    with hashing_slot():
        return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash (unknown email) it does the same work."""
    hasher = _hasher()
    try:
        with hashing_slot():
            matched = hasher.verify(password_hash or _dummy_hash(hasher), password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


@functools.cache
def _dummy_hash_for(time_cost: int, memory_cost: int, parallelism: int) -> str:
    hasher = PasswordHasher(time_cost, memory_cost, parallelism=parallelism, type=Type.ID)
    return hasher.hash(_DUMMY_PASSWORD)


def _dummy_hash(hasher: PasswordHasher) -> str:
    """A hash with today's parameters, made once: one verify per login, known email or not."""
    return _dummy_hash_for(hasher.time_cost, hasher.memory_cost, hasher.parallelism)


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)

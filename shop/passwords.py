"""Password hashing with Argon2id; parameters come from settings (strong outside tests)."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

MIN_LENGTH = 8
MAX_LENGTH = 128

# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_PASSWORD = "not-a-real-password"  # noqa: S105 - never a password  # nosec B105


def _hasher() -> PasswordHasher:
    config = current_app.config
    return PasswordHasher(
        time_cost=config["SHOP_PASSWORD_TIME_COST"],
        memory_cost=config["SHOP_PASSWORD_MEMORY_COST"],
        parallelism=config["SHOP_PASSWORD_PARALLELISM"],
        type=Type.ID,
    )


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash (unknown email) it does the same work."""
    hasher = _hasher()
    try:
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

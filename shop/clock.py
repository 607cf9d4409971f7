"""The one clock: aware UTC time. Tests freeze it by passing ``now`` explicitly."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def ms(at: datetime) -> int:
    """``at`` in milliseconds since the epoch (the waiting room's unit)."""
    return int(at.timestamp() * 1000)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)

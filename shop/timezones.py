"""Wall-clock time in a person's zone, to and from the aware UTC the shop stores."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from shop.errors import InvalidInput


def timezone_names() -> list[str]:
    return sorted(name for name in available_timezones() if "/" in name or name == "UTC")


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def to_utc(local: datetime, zone_name: str) -> datetime:
    """A wall-clock time the maker typed, read in their time zone, as aware UTC.

    A time that does not exist there (skipped when the clocks go forward) is refused rather
    than silently moved.
    """
    tz = zone(zone_name)
    aware = local.replace(tzinfo=tz, fold=0)
    as_utc = aware.astimezone(ZoneInfo("UTC"))
    if as_utc.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise InvalidInput(
            f"{local:%-d %b %Y, %H:%M} doesn't exist in {tz.key} (the clocks skip it). "
            "Pick a time outside the change."
        )
    return as_utc


def to_local(value: datetime | None, zone_name: str) -> datetime | None:
    """An aware time as a naive wall-clock time in the maker's zone (for form inputs)."""
    if value is None:
        return None
    return value.astimezone(zone(zone_name)).replace(tzinfo=None)

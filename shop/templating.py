"""Jinja filters and globals: money, time, Markdown."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask
from flask_login import current_user

from shop import clock, markdown, money


def format_datetime(value: datetime | None, fmt: str = "%-d %b %Y, %H:%M", tz: str | None = None):
    if value is None:
        return ""
    zone_name = (
        tz
        or (
            getattr(current_user, "timezone", None)
            if current_user and current_user.is_authenticated
            else None
        )
        or "UTC"
    )
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = clock.as_utc(value).astimezone(zone)
    return f"{local.strftime(fmt)} {local.tzname()}"


def iso(value: datetime | None) -> str:
    return clock.as_utc(value).isoformat().replace("+00:00", "Z") if value else ""


def humanize_duration(seconds: float | int | None) -> str:
    """``4 min``, ``2 h 5 min``, ``3 days`` — for "sold out in …" and countdowns."""
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def register(app: Flask) -> None:
    app.jinja_env.filters["money"] = money.format_money
    app.jinja_env.filters["datetime"] = format_datetime
    app.jinja_env.filters["iso"] = iso
    app.jinja_env.filters["duration"] = humanize_duration
    app.jinja_env.filters["markdown"] = markdown.render

    @app.context_processor
    def _globals():
        return {"now": clock.now(), "hold_minutes": app.config["SHOP_HOLD_MINUTES"]}

"""Every Jinja filter and global, registered in one place: money, time, Markdown, audit."""

from __future__ import annotations

import re
from datetime import datetime

from flask import Flask, current_app, g
from flask_login import current_user
from markupsafe import Markup, escape

from shop import clock, markdown, money, shipping_rates, timezones

SHARED_RENDER = "shop_shared_render"  # g flag: a render every visitor shares (page_cache)


def render_piece(name: str, **context) -> str:
    """Template ``name`` with only ``context`` — none of the app's context processors, one of
    which (Flask-Login's) reads the account: for the pieces a page a crowd reloads fills its
    shared shell with (shop/page_cache.py)."""
    return current_app.jinja_env.get_template(name).render(context)


def format_datetime(value: datetime | None, fmt: str = "%-d %b %Y, %H:%M", tz: str | None = None):
    """In ``tz``, else the account's zone, else UTC — and UTC in a render every visitor shares."""
    if value is None:
        return ""
    zone_name = (
        tz
        or (
            getattr(current_user, "timezone", None)
            if current_user and current_user.is_authenticated and not g.get(SHARED_RENDER)
            else None
        )
        or "UTC"
    )
    local = clock.as_utc(value).astimezone(timezones.zone(zone_name))
    return f"{local.strftime(fmt)} {local.tzname()}"


def format_day(value, fmt: str = "%-d %B %Y") -> str:
    """A calendar day in the visitor's time zone, without the zone's name."""
    return format_datetime(value, fmt).rsplit(" ", 1)[0] if value else ""


LOCAL_FORMATS = {"datetime": "%-d %b %Y, %H:%M", "time": "%H:%M"}


def local_time(value: datetime | None, style: str = "datetime") -> Markup:
    """A ``<time>`` for customer pages: readable without scripts (the account's zone, else
    UTC), and shown in the browser's own zone, named, by static/js/site.js."""
    if value is None:
        return Markup("")
    text = format_day(value) if style == "day" else format_datetime(value, LOCAL_FORMATS[style])
    return Markup('<time datetime="{}" data-local="{}">{}</time>').format(
        iso(value), style, escape(text)
    )


def iso(value: datetime | None) -> str:
    return clock.as_utc(value).isoformat().replace("+00:00", "Z") if value else ""


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[*_`>#\[\]]", "", text or "").split()).rstrip(".…").lower()


def own_summary(summary: str | None, story: str | None) -> str:
    """The summary, unless it only repeats the story's opening (it would be read twice)."""
    lead = _plain(summary or "")
    if not lead or _plain(story or "").startswith(lead):
        return ""
    return summary or ""


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


_WHEN = re.compile(r"^(opens|closes) (\d{4}-\d\d-\d\dT[0-9:.]+(?:[+-]\d\d:\d\d|Z)?)$")


def audit_detail(entry) -> str:
    """An audit entry's detail for people: recorded times shown in the reader's time zone."""
    found = _WHEN.match(entry.detail or "")
    if found is None:
        return entry.detail or ""
    if entry.action == "drop.opened":
        return ""  # the entry's own time says it
    at = datetime.fromisoformat(found.group(2).replace("Z", "+00:00"))
    return f"{found.group(1)} {format_datetime(at)}"


def register(app: Flask) -> None:
    app.jinja_env.filters["money"] = money.format_money
    app.jinja_env.filters["datetime"] = format_datetime
    app.jinja_env.filters["day"] = format_day
    app.jinja_env.filters["iso"] = iso
    app.jinja_env.filters["duration"] = humanize_duration
    app.jinja_env.filters["markdown"] = markdown.render
    app.jinja_env.filters["audit_detail"] = audit_detail
    app.jinja_env.filters["own_summary"] = own_summary
    app.jinja_env.filters["local_time"] = local_time
    app.jinja_env.filters["country_name"] = shipping_rates.country_name

    @app.context_processor
    def _globals():
        return {"now": clock.now(), "hold_minutes": app.config["SHOP_HOLD_MINUTES"]}

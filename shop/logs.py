"""Logs on standard error: one line per request (:func:`init_app`) and per worker job
(``shop.worker``), JSON in production or with ``SHOP_LOG_FORMAT=json``, plain text otherwise
(docs/OPERATIONS.md).

Every line is redacted on its way out (:func:`redact`): email addresses keep only their first
letter and domain, digit runs that could be card numbers (13 to 19 digits passing the Luhn
check) and Stripe keys become ``[redacted]``. Passwords
are never logged in the first place: the request line names the route's rule, never the path,
query or body.

:func:`configure` sets up the process's handler; only the entry point (``wsgi.py``) calls it,
so an app built in a test logs through pytest's capture like any library.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask, g, has_request_context, request
from flask.globals import request_ctx

from shop import auth

log = logging.getLogger("shop.requests")

FORMATS = ("json", "text")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Asked every few seconds by machines: logged at DEBUG, unless they fail.
QUIET_ENDPOINTS = frozenset({"ops.healthz", "ops.readyz", "ops.scrape", "static"})
# Libraries whose INFO lines repeat what the request log says (werkzeug's names raw paths,
# reset tokens included; stripe's each API call).
_CHATTY = ("werkzeug", "stripe")

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_CARD = re.compile(r"(?<![\w.])(?:\d[ -]?){12,18}\d(?![\w.])")
_STRIPE_SECRET = re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+|\bwhsec_[A-Za-z0-9]+")


def redact(text: str) -> str:
    """``text`` without full email addresses, card numbers or Stripe secrets."""
    text = _EMAIL.sub(r"\1***@\2", text)
    text = _CARD.sub(_card_redacted, text)
    return _STRIPE_SECRET.sub("[redacted]", text)


def _card_redacted(found: re.Match) -> str:
    """A digit run that passes the Luhn check, as every card number does."""
    digits = [int(c) for c in found.group() if c.isdigit()]
    total = sum(
        d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits))
    )
    return "[redacted]" if total % 10 == 0 else found.group()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, then the record's
    ``fields`` (a request's method, route, status …)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, separators=(",", ":")))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return redact(f"{line} [{request_id}]" if request_id else line)


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = g.get("request_id")
        return True


class _StandardError(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest swaps it per test)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure(config) -> None:
    """The process's logging: one handler on the root logger, writing to standard error in
    ``SHOP_LOG_FORMAT`` at ``SHOP_LOG_LEVEL``. Idempotent."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StandardError)]:
        root.removeHandler(handler)
    handler = _StandardError()
    handler.setFormatter(
        JsonFormatter() if config.get("SHOP_LOG_FORMAT") == "json" else TextFormatter()
    )
    handler.addFilter(_RequestId())
    root.addHandler(handler)
    root.setLevel(config.get("SHOP_LOG_LEVEL") or "INFO")
    # Flask would add its own handler to the app's logger ("shop"): ours is on the root.
    from flask.logging import default_handler

    logging.getLogger("shop").removeHandler(default_handler)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)


def init_app(app: Flask) -> None:
    """Before every other hook (a rate limit's 429 too): a request id and the start time; the
    log line once the answer is ready. ``shop.security`` sends the id as ``X-Request-Id``."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_log_request)


# A proxy's own request id (nginx's $request_id, a load balancer's) is kept when it is sane.
_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{8,64}")


def _start() -> None:
    g.started = time.perf_counter()
    g.request_id = request_id(request.headers.get("X-Request-Id", ""))


def request_id(incoming: str) -> str:
    """The proxy's request id when it is sane, else a new one."""
    return incoming if _REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)


def _log_request(response):
    quiet = request.endpoint in QUIET_ENDPOINTS and response.status_code < 500
    started = g.get("started")
    rule = request.url_rule.rule if request.url_rule is not None else None
    log_answer(
        request.method,
        rule,
        response.status_code,
        started=started,
        user_id=_user_id,
        client=request.remote_addr,
        quiet=quiet,
    )
    return response


def log_answer(
    method: str,
    rule: str | None,
    status: int,
    *,
    started: float | None,
    user_id: Callable[[], int | None] | None,
    client: str | None,
    quiet: bool = False,
    request_id: str | None = None,
) -> None:
    """The one line per request (``user_id`` is asked only when the line is written); the
    app's hook and ``shop.fast_path`` both write it."""
    level = logging.DEBUG if quiet else logging.WARNING if status >= 500 else logging.INFO
    if not log.isEnabledFor(level):
        return
    duration = round((time.perf_counter() - started) * 1000, 1) if started else None
    who = user_id() if user_id is not None else None
    fields = {
        "event": "request",
        "method": method,
        "route": rule,
        "status": status,
        "duration_ms": duration,
        "user_id": who,
        "client": client,
    }
    extra: dict[str, object] = {"fields": fields}
    if request_id is not None:
        extra["request_id"] = request_id
    log.log(
        level,
        "%s %s %s %s ms user %s from %s",
        method,
        rule or "(no route)",
        status,
        duration,
        who or "-",
        client,
        extra=extra,
    )


def _user_id() -> int | None:
    """Who the request was for: the user Flask-Login loaded, else the signed session's claim
    (read without marking the session used, so an anonymous page stays cacheable)."""
    user = g.get("_login_user")
    if user is not None and getattr(user, "is_authenticated", False):
        return user.id
    session = request_ctx.session if request_ctx else None
    claim = auth.parse_claim(dict.get(session, "_user_id")) if session is not None else None
    return claim.id if claim is not None else None

"""Domain errors and the one place that turns any error into HTTP.

A person gets a clear page, an API caller clear JSON, nobody a traceback. A view may set
``g.render_error`` to a callable ``(error) -> str`` to show a domain error on its own page
(the drop page re-rendered with the reason), keeping the status code from here (or returning
``(page, status)`` or a whole response, a redirect say, when it needs another).
"""

from __future__ import annotations

import logging
import math
import secrets
import time

from flask import Flask, Response, g, jsonify, render_template, request
from flask_limiter.errors import RateLimitExceeded
from markupsafe import escape
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import HTTPException, SecurityError

from shop.extensions import limiter

log = logging.getLogger(__name__)


class ShopError(Exception):
    status = 400
    code = "bad_request"
    message = "That request could not be completed."
    retry_after: int | None = None  # seconds, sent as Retry-After when set

    def __init__(self, message: str | None = None, **details: object) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class NotFound(ShopError):
    status = 404
    code = "not_found"
    message = "We couldn't find that."


class LoginRequired(ShopError):
    """Nobody is signed in, or the session was ended elsewhere (logout, password change)."""

    status = 401
    code = "login_required"
    message = "Please log in to continue."


class Forbidden(ShopError):
    status = 403
    code = "forbidden"
    message = "You don't have access to that."


class AccountSuspended(ShopError):
    """The operator suspended this maker: the console is closed, their drops sell nothing."""

    status = 403
    code = "account_suspended"
    message = (
        "Your maker account is suspended, so your drops are not selling and the console is "
        "closed. Your customers' orders are safe. Write to the shop's operator to reinstate it."
    )


class InvalidQuantity(ShopError):
    status = 422
    code = "invalid_quantity"
    message = "Choose a quantity you are allowed to buy."


class InvalidInput(ShopError):
    status = 422
    code = "invalid_input"
    message = "Some of what you entered needs another look."


class AgeRestricted(ShopError):
    """The batch has a minimum age and the buyer gave no date of birth, or a too recent one."""

    status = 403
    code = "age_restricted"

    def __init__(self, minimum_age: int, *, confirmed: bool = True) -> None:
        super().__init__(
            f"Sorry — this batch is only sold to buyers aged {minimum_age} or over."
            if confirmed
            else f"This batch is for buyers aged {minimum_age} or over: "
            "confirm your date of birth to buy it."
        )
        self.minimum_age = minimum_age


class CannotShipThere(ShopError):
    """The batch ships only to listed countries and the buyer chose another (or none)."""

    status = 422
    code = "cannot_ship_there"

    def __init__(self, countries: list[str], *, country: str | None = None) -> None:
        where = ", ".join(countries)
        super().__init__(
            f"This batch ships only to {where}, not to {country}."
            if country
            else f"This batch ships only to {where}: choose where it goes."
        )
        self.countries = countries


class DestinationNeeded(ShopError):
    """Shipping is priced by country and the held order has none yet: ask before Checkout."""

    status = 409
    code = "destination_needed"
    message = "Choose the country this order ships to."

    def __init__(self, countries: list[str]) -> None:
        super().__init__()
        self.countries = countries


class DropNotLive(ShopError):
    status = 409
    code = "drop_not_live"
    message = "This drop is not open for buying right now."


class NotOnSaleYet(DropNotLive):
    """A batch lined up behind another of its product: on sale when that one sells out."""

    def __init__(self, number: int, ahead: int, *, just_now: bool = False) -> None:
        super().__init__(
            f"Batch No. {number} goes on sale when No. {ahead} sells out, and No. {ahead} sold "
            "out a moment ago: try again."
            if just_now
            else f"Batch No. {number} goes on sale when No. {ahead} sells out. "
            f"No. {ahead} still has units: buy those first."
        )


class SoldOut(ShopError):
    status = 409
    code = "sold_out"

    def __init__(self, remaining: int = 0, message: str | None = None) -> None:
        if message is None:
            message = (
                "Sold out — every unit of this batch is taken."
                if remaining <= 0
                else f"Only {remaining} left — choose a smaller quantity."
            )
        super().__init__(message, remaining=remaining)
        self.remaining = remaining


class LimitReached(ShopError):
    status = 409
    code = "limit_reached"

    def __init__(self, allowed: int = 0, message: str | None = None) -> None:
        if message is None:
            message = (
                "You already have the most this batch allows per customer."
                if allowed <= 0
                else f"You can buy {allowed} more of this batch."
            )
        super().__init__(message, allowed=allowed)
        self.allowed = allowed


class CoolingOff(ShopError):
    """Too many of the account's holds ran out unpaid lately (SECURITY.md, "Hoarding"): no new
    hold until the oldest of them leaves the window. 429: too many, in a time; try again then."""

    status = 429
    code = "cooling_off"

    def __init__(self, lapses: int, retry_after: int) -> None:
        retry_after = max(1, retry_after)
        super().__init__(
            f"Your last {lapses} holds ran out without being paid for, so you can't hold "
            f"anything for a while. You can buy again {_in_minutes(retry_after)}.",
            lapses=lapses,
            retry_after=retry_after,
        )
        self.retry_after = retry_after


class DropCapReached(ShopError):
    """The account already holds (unpaid) as many units of the drop as one account may at once.
    409, like LimitReached: the customer's own holds are in the way; paying or cancelling one
    makes room."""

    status = 409
    code = "drop_cap_reached"

    def __init__(self, cap: int, *, allowed: int = 0, frees_in: int | None = None) -> None:
        held = (
            f"You can hold {allowed} more of this drop right now"
            if allowed > 0
            else "You're already holding as much of this drop as one account can"
        )
        when = (
            f", or try again {_in_minutes(frees_in)}, when your first hold runs out"
            if frees_in
            else ""
        )
        super().__init__(
            f"{held}: one account holds at most {cap} units of a drop at once. Pay for or "
            f"cancel a hold (My orders) to make room{when}.",
            cap=cap,
            allowed=allowed,
        )
        self.cap = cap
        self.allowed = allowed


class NetworkCapReached(ShopError):
    """Everyone on the client's network together holds (unpaid) as many units of the drop as one
    network may at once. 429 with Retry-After: holds end within minutes, as they're paid or run
    out, and nobody on the network can make room for this customer."""

    status = 429
    code = "network_cap_reached"
    retry_after = 60

    def __init__(self, cap: int) -> None:
        super().__init__(
            f"Too many units of this drop are held from your network right now (at most {cap} "
            "at once from one network). Please try again in a minute: holds end as they're "
            "paid for or run out.",
            cap=cap,
            retry_after=self.retry_after,
        )
        self.cap = cap


class NotSoldOut(ShopError):
    """A waitlist is for a batch the crowd can buy none of, and of which some may come free."""

    status = 409
    code = "not_sold_out"
    message = "This batch isn't sold out: you can buy it now, no need to wait in line."


class AlreadyInLine(ShopError):
    status = 409
    code = "already_in_line"
    message = "You're already on the waitlist for this batch."


class InvalidState(ShopError):
    status = 409
    code = "invalid_state"
    message = "That can't be done in the current state."


class EditNotAllowed(ShopError):
    status = 422
    code = "edit_not_allowed"
    message = "That change isn't allowed."


class EmailNotVerified(ShopError):
    """Buying needs a confirmed address (SHOP_REQUIRE_VERIFIED_EMAIL): one mailbox per account."""

    status = 403
    code = "email_not_verified"
    message = (
        "Please confirm your email address before buying: follow the link we sent you. "
        "No email? Send it again from your account page."
    )


class TooSoon(ShopError):
    """The same email was asked for again too soon (resend throttle)."""

    status = 429
    code = "too_soon"
    message = "We sent that email a moment ago. Check your inbox (and spam), or try again soon."


class TooManyAttempts(ShopError):
    """A limit counted before the work (shop.attempts) is full: nothing was tried."""

    status = 429
    code = "too_many_requests"

    def __init__(self, retry_after: int = 60) -> None:
        super().__init__(_too_many_message(retry_after), retry_after=retry_after)
        self.retry_after = retry_after


class PasswordWorkBusy(ShopError):
    """Every password-hashing slot of this process stayed taken (shop.passwords): try again."""

    status = 503
    code = "busy"
    message = (
        "We're checking a lot of passwords right now, so nothing was changed. "
        "Please try again in a moment."
    )
    retry_after = 2


class LinkInvalid(ShopError):
    """An emailed link that is forged, expired or already used; nothing was changed."""

    status = 400
    code = "link_invalid"
    message = "This link isn't valid. Nothing was changed."


class ImagesUnavailable(ShopError):
    """The image bucket (``SHOP_IMAGE_STORE=s3``) did not answer: nothing was stored."""

    status = 503
    code = "images_unavailable"
    message = "Pictures can't be stored or shown right now. Nothing was saved — try again soon."
    retry_after = 30


class PaymentUnavailable(ShopError):
    """Stripe did not answer in time or failed on its side: the hold stays, try again."""

    status = 503
    code = "payment_unavailable"
    message = "Payment is taking longer than it should. Your units are still held — try again."


class PaymentRejected(ShopError):
    """Stripe definitely refused: the hold has been released."""

    status = 502
    code = "payment_rejected"
    message = "The payment provider refused this checkout, so your hold was released."


GENERIC_TITLES = {
    400: "That request didn't look right",
    401: "Please log in",
    403: "That's not yours to open",
    404: "We couldn't find that page",
    405: "That isn't allowed here",
    409: "That couldn't be done",
    413: "That upload is too large",
    422: "Please check what you entered",
    429: "Slow down a little",
    500: "Something went wrong on our side",
    502: "The payment provider said no",
    503: "Please try again in a moment",
}


def wants_json() -> bool:
    if request.is_json or request.path.startswith(("/api/", "/stripe/")):
        return True
    return accepts_json(request.accept_mimetypes)


def accepts_json(accept: MIMEAccept) -> bool:
    """An ``Accept`` header that prefers JSON to HTML (a script, or the shop's own fetches)."""
    best = accept.best_match(["text/html", "application/json"])
    return best == "application/json" and accept[best] > accept["text/html"]


def error_response(status: int, code: str, message: str, **extra: object):
    title = GENERIC_TITLES.get(status, "Something went wrong")
    if wants_json():
        return jsonify(error={"code": code, "message": message, **extra}), status
    if extra.get("request_id") is None:
        extra["request_id"] = getattr(g, "request_id", None)
    if _host_rejected():
        return _bare_page(status, title, message), status
    return (
        render_template("errors/error.html", status=status, title=title, message=message, **extra),
        status,
    )


def _host_rejected() -> bool:
    """A Host header outside TRUSTED_HOSTS leaves no URL adapter: no url_for, so no layout."""
    return isinstance(getattr(request, "routing_exception", None), SecurityError)


def _bare_page(status: int, title: str, message: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · Small Batch</title></head><body>"
        f"<h1>{escape(title)}</h1><p>{escape(message)}</p></body></html>"
    )


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ShopError)
    def handle_shop_error(error: ShopError):
        renderer = getattr(g, "render_error", None)
        if renderer is not None and not wants_json():
            page = renderer(error)
            if isinstance(page, tuple | Response):
                return page
            if error.retry_after is None:
                return page, error.status
            return page, error.status, {"Retry-After": str(error.retry_after)}
        body, status = error_response(
            error.status, error.code, error.message, **_public(error.details)
        )
        if error.retry_after is None:
            return body, status
        return body, status, {"Retry-After": str(error.retry_after)}

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        status = error.code or 500
        if isinstance(error, RateLimitExceeded):
            wait = _retry_after_seconds()
            body, code = error_response(
                429, "too_many_requests", _too_many_message(wait), retry_after=wait
            )
            return body, code, {"Retry-After": str(wait)}
        message = _http_message(error)
        response = error_response(status, _slug(error.name), message)
        if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
            body, code = response
            return body, code, {"Allow": ", ".join(error.valid_methods)}  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        if isinstance(error, HTTPException):  # pragma: no cover - routed above
            return handle_http_error(error)
        request_id = getattr(g, "request_id", None) or secrets.token_hex(6)
        log.exception("unhandled error, request id %s", request_id)
        return error_response(
            500,
            "internal_error",
            "We hit a snag and have been told about it. Nothing was charged twice and no "
            "unit was lost — please try again.",
            request_id=request_id,
        )


def _http_message(error: HTTPException) -> str:
    defaults = {
        400: "The request was malformed or the form expired. Go back, reload and try again.",
        403: "You don't have access to that.",
        404: "The page may have moved, or the link may be mistyped.",
        405: "That action isn't available at this address.",
        413: "That upload or form is larger than we accept.",
        429: "Too many attempts in a short time. Please try again in a minute.",
    }
    status = error.code or 500
    description = getattr(error, "shop_message", None)
    return description or defaults.get(status, "Something went wrong.")


def _retry_after_seconds() -> int:
    """Seconds until the breached limit lets this client in again (at least 1)."""
    try:
        current = limiter.current_limit
        reset_at = current.reset_at if current is not None else None
    except Exception:  # the storage is unreachable: a safe guess beats a second error
        log.warning("could not read the rate limit window", exc_info=True)
        reset_at = None
    if reset_at is None:
        return 60
    return max(1, int(reset_at - time.time()))  # as Flask-Limiter's Retry-After header


def _too_many_message(wait: int) -> str:
    return f"Too many attempts in a short time. Please try again {_in_words(wait)}."


def _in_words(seconds: int) -> str:
    if seconds < 60:
        return f"in {seconds} second{'s' if seconds != 1 else ''}"
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return "in a minute" if minutes == 1 else f"in about {minutes} minutes"
    hours = max(1, round(minutes / 60))
    return "in an hour" if hours == 1 else f"in about {hours} hours"


def _in_minutes(seconds: int) -> str:
    """Like :func:`_in_words`, to the minute for waits under three hours ("in 71 minutes")."""
    minutes = math.ceil(seconds / 60)
    if seconds < 60 or minutes >= 180:
        return _in_words(seconds)
    return "in a minute" if minutes == 1 else f"in {minutes} minutes"


def _slug(name: str) -> str:
    return name.lower().replace(" ", "_")


def _public(details: dict) -> dict:
    return {k: v for k, v in details.items() if isinstance(v, str | int | float | bool)}

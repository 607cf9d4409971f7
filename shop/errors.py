"""Domain errors and the one place that turns any error into HTTP.

A person gets a clear page, an API caller clear JSON, nobody a traceback. A view may set
``g.render_error`` to a callable ``(error) -> str`` to show a domain error on its own page
(the drop page re-rendered with "Sold out"), keeping the status code from here.
"""

from __future__ import annotations

import logging
import secrets

from flask import Flask, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ShopError(Exception):
    status = 400
    code = "bad_request"
    message = "That request could not be completed."

    def __init__(self, message: str | None = None, **details: object) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class NotFound(ShopError):
    status = 404
    code = "not_found"
    message = "We couldn't find that."


class Forbidden(ShopError):
    status = 403
    code = "forbidden"
    message = "You don't have access to that."


class InvalidQuantity(ShopError):
    status = 422
    code = "invalid_quantity"
    message = "Choose a quantity you are allowed to buy."


class InvalidInput(ShopError):
    status = 422
    code = "invalid_input"
    message = "Some of what you entered needs another look."


class DropNotLive(ShopError):
    status = 409
    code = "drop_not_live"
    message = "This drop is not open for buying right now."


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


class InvalidState(ShopError):
    status = 409
    code = "invalid_state"
    message = "That can't be done in the current state."


class EditNotAllowed(ShopError):
    status = 422
    code = "edit_not_allowed"
    message = "That change isn't allowed."


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
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def error_response(status: int, code: str, message: str, **extra: object):
    if wants_json():
        return jsonify(error={"code": code, "message": message, **extra}), status
    return (
        render_template(
            "errors/error.html",
            status=status,
            title=GENERIC_TITLES.get(status, "Something went wrong"),
            message=message,
            request_id=getattr(g, "request_id", None),
            **extra,
        ),
        status,
    )


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ShopError)
    def handle_shop_error(error: ShopError):
        renderer = getattr(g, "render_error", None)
        if renderer is not None and not wants_json():
            return renderer(error), error.status
        return error_response(error.status, error.code, error.message, **_public(error.details))

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        status = error.code or 500
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
        413: "That upload is larger than we accept.",
        429: "Too many attempts in a short time.",
    }
    status = error.code or 500
    description = getattr(error, "shop_message", None)
    return description or defaults.get(status, "Something went wrong.")


def _slug(name: str) -> str:
    return name.lower().replace(" ", "_")


def _public(details: dict) -> dict:
    return {k: v for k, v in details.items() if isinstance(v, str | int | float | bool)}

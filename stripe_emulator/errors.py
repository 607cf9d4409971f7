"""Stripe-shaped API errors.

Every non-2xx response of the ``/v1`` API carries ``{"error": {"type", "code", "param", "message",
"doc_url", "request_log_url"}}`` exactly as stripe-python expects (docs/STRIPE.md §7).
"""

from __future__ import annotations

from typing import Any

INVALID_REQUEST = "invalid_request_error"


class StripeAPIError(Exception):
    """An error that becomes a Stripe error response.

    ``store`` says whether the idempotency layer may save this response under the request's key:
    Stripe saves everything once execution has begun, but not parameter-validation failures.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        store: bool = True,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.store = store
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        """The JSON body Stripe would send for this error."""
        error: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "param": self.param,
            "message": self.message,
        }
        if self.code:
            error["doc_url"] = "https://stripe.com/docs/error-codes/" + self.code.replace("_", "-")
        if request_id:
            error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        error.update(self.extra)
        return {"error": error}


class ParamError(StripeAPIError):
    """A 400 raised while validating parameters; never stored under an idempotency key."""

    def __init__(self, message: str, *, param: str | None, code: str | None = None) -> None:
        super().__init__(400, message, code=code, param=param, store=False)


def parameter_missing(param: str) -> ParamError:
    return ParamError(f"Missing required param: {param}.", param=param, code="parameter_missing")


def parameter_unknown(param: str, hint: str | None = None) -> ParamError:
    message = f"Received unknown parameter: {param}"
    if hint:
        message += f". {hint}"
    return ParamError(message, param=param, code="parameter_unknown")


def resource_missing(
    kind: str, object_id: str, *, param: str | None = "id", status: int = 404
) -> StripeAPIError:
    """``No such <kind>: '<id>'`` — 404 for a missing path id, 400 for a missing referenced id."""
    return StripeAPIError(
        status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )

"""The emulator's WSGI app: Stripe's ``/v1`` subset, the hosted page and ``/_emulator`` controls.

Every ``/v1`` request goes through :func:`_run_api`, which applies (in this order) fault
injection, bearer auth, bracket-form decoding, the idempotency layer, parameter validation
against the SDK's typed params, and finally the handler. Responses are JSON with a
``Request-Id`` header; errors use Stripe's ``{"error": {...}}`` shape.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import stripe.params as sdk_params
import stripe.params.checkout as sdk_checkout_params
from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from stripe_emulator import hosted, objects
from stripe_emulator.clock import Clock
from stripe_emulator.errors import StripeAPIError, resource_missing
from stripe_emulator.forms import decode_pairs
from stripe_emulator.schema import validate
from stripe_emulator.state import EmulatorState, FaultConfig, RequestInfo

log = logging.getLogger("stripe_emulator")

EXTENSION_KEY = "stripe_emulator"

ApiHandler = Callable[..., tuple[dict[str, Any], int] | dict[str, Any]]


def create_app(
    *,
    webhook_url: str | None = None,
    webhook_secret: str = "whsec_emulator",  # noqa: S107 - a test-mode placeholder
    api_key_prefix: str = "sk_test_",
    public_base_url: str | None = None,
    clock: Clock | None = None,
) -> Flask:
    """Build the emulator app around a fresh :class:`EmulatorState`; no threads, no I/O.

    The state is ``app.extensions["stripe_emulator"]`` (or :func:`get_state`). Background work
    (expiry sweeps, webhook delivery) starts with ``state.start()`` — :func:`serve_in_thread`
    and ``python -m stripe_emulator`` do that; webhook delivery also starts on the first event.
    """
    state = EmulatorState(
        clock=clock,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        api_key_prefix=api_key_prefix,
        public_base_url=public_base_url,
    )
    app = Flask("stripe_emulator")
    app.extensions[EXTENSION_KEY] = state
    _register_api(app, state)
    _register_control(app)
    hosted.register(app, state)
    _register_plumbing(app)
    return app


def get_state(app: Flask) -> EmulatorState:
    """The :class:`EmulatorState` behind an app made by :func:`create_app`."""
    return app.extensions[EXTENSION_KEY]


# --- responses ----------------------------------------------------------------------------


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, indent=2) + "\n", status, mimetype="application/json")


def error_response(error: StripeAPIError) -> Response:
    response = json_response(error.body(g.get("request_id")), error.status)
    response.headers.update(error.headers)
    return response


def _register_plumbing(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        g.request_id = objects.new_id("req_", 14)
        if request.path.startswith("/v1/"):
            get_state(current_app).record_request(request.method, request.path)

    @app.after_request
    def stripe_headers(response: Response) -> Response:
        response.headers.setdefault("Request-Id", g.get("request_id") or "")
        if request.path.startswith("/v1/"):
            response.headers.setdefault("Stripe-Version", objects.API_VERSION)
            response.headers.setdefault("Cache-Control", "no-cache, no-store")
            if response.status_code == 409 or response.status_code >= 500:
                response.headers.setdefault("Stripe-Should-Retry", "true")
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response | HTTPException:
        if request.path.startswith("/v1/") or request.path == "/v1":
            if error.code in (404, 405):
                return error_response(
                    StripeAPIError(
                        404,
                        f"Unrecognized request URL ({request.method}: {request.path}). "
                        "The local Stripe emulator implements only part of the API.",
                    )
                )
            return error_response(StripeAPIError(error.code or 400, error.description or ""))
        if request.path.startswith("/_emulator"):
            return json_response(
                {"error": {"type": "emulator_error", "message": error.description}},
                error.code or 400,
            )
        return error

    @app.get("/")
    def index() -> Response:
        return json_response(
            {
                "emulator": "stripe_emulator",
                "api_version": objects.API_VERSION,
                "docs": "see the stripe_emulator package docstring",
            }
        )


# --- the /v1 API --------------------------------------------------------------------------


def _api(params_cls: type) -> Callable[[ApiHandler], Callable[..., Response]]:
    """Wrap a handler ``(params, request_info, **path_args) -> body | (body, status)``."""

    def decorator(handler: ApiHandler) -> Callable[..., Response]:
        @functools.wraps(handler)
        def view(**path_args: str) -> Response:
            return _run_api(get_state(current_app), params_cls, handler, path_args)

        return view

    return decorator


def _run_api(
    state: EmulatorState, params_cls: type, handler: ApiHandler, path_args: dict[str, str]
) -> Response:
    request_id: str = g.request_id
    state.sweep()
    fault = state.take_fault(request.path)
    if fault.fail_status is not None:
        return error_response(
            StripeAPIError(
                fault.fail_status,
                "An error occurred with our connection to Stripe. (Injected by the local "
                "emulator's fault injection.)",
                type="api_error",
                headers={"Stripe-Should-Retry": "true"},
            )
        )
    if fault.hang_seconds:
        state.stopping.wait(fault.hang_seconds)
    try:
        _authenticate(state)
        pairs = list(request.args.items(multi=True))
        if request.method == "POST":
            pairs += list(request.form.items(multi=True))
        tree = decode_pairs(pairs)
    except StripeAPIError as error:
        return error_response(error)

    key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
    if key is not None:
        if len(key) > 255:
            return error_response(
                StripeAPIError(
                    400,
                    "Idempotency-Key must be at most 255 characters long.",
                    param="Idempotency-Key",
                    store=False,
                )
            )
        fingerprint = json.dumps(tree, sort_keys=True)
        try:
            saved = state.idempotency_begin(
                key, request.method, request.path, fingerprint, request_id
            )
        except StripeAPIError as error:
            return error_response(error)
        if saved is not None:
            replay = Response(saved.body, saved.status, mimetype="application/json")
            replay.headers.update(saved.headers)
            replay.headers["Idempotent-Replayed"] = "true"
            replay.headers["Original-Request"] = saved.request_id
            replay.headers["Idempotency-Key"] = key
            return replay

    if fault.delay_seconds:
        state.stopping.wait(fault.delay_seconds)
    try:
        params = validate(params_cls, tree)
        result = handler(params, RequestInfo(request_id, key), **path_args)
        body, status = result if isinstance(result, tuple) else (result, 200)
        response = json_response(body, status)
    except StripeAPIError as error:
        response = error_response(error)
        if key is not None and not error.store:
            state.idempotency_abort(key, request_id)
            return response
    except Exception:
        log.exception("stripe emulator: unexpected error in %s %s", request.method, request.path)
        if key is not None:
            state.idempotency_abort(key, request_id)
        return error_response(
            StripeAPIError(
                500, "An unknown error occurred in the local emulator.", type="api_error"
            )
        )
    if key is not None:
        response.headers["Idempotency-Key"] = key
        saved_headers = {k: v for k, v in response.headers.items() if k == "Stripe-Should-Retry"}
        state.idempotency_finish(
            key, request_id, response.status_code, response.get_data(), saved_headers
        )
    return response


def _authenticate(state: EmulatorState) -> None:
    """Accept ``Authorization: Bearer sk_test_…`` (or HTTP basic with the key as user)."""
    header = request.headers.get("Authorization", "")
    key = ""
    if header.startswith("Bearer "):
        key = header[len("Bearer ") :].strip()
    elif header.startswith("Basic "):
        try:
            key = base64.b64decode(header[len("Basic ") :]).decode().split(":", 1)[0]
        except ValueError:
            key = ""
    if not key:
        raise StripeAPIError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
            store=False,
        )
    if not key.startswith(state.api_key_prefix) or len(key) <= len(state.api_key_prefix):
        masked = key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else "****"
        raise StripeAPIError(401, f"Invalid API Key provided: {masked}", store=False)


def _register_api(app: Flask, state: EmulatorState) -> None:
    """The /v1 routes: (method, rule, the SDK's params class, handler).

    Most handlers only pass the state the validated params (lists, creates) or an object kind,
    the path id and ``expand[]`` (retrieves), so those are two tables; the rest are spelled out.
    """
    checkout, sdk = sdk_checkout_params, sdk_params
    session = "/v1/checkout/sessions/<object_id>"

    def route(method: str, rule: str, params_cls: type, handler: ApiHandler) -> None:
        app.add_url_rule(rule, f"{method} {rule}", _api(params_cls)(handler), methods=[method])

    def with_params(call: Callable[[dict[str, Any]], dict[str, Any]]) -> ApiHandler:
        return lambda params, info: call(params)

    def retrieve(kind: str) -> ApiHandler:
        return lambda params, info, object_id: state.retrieve(
            kind, object_id, params.get("expand", [])
        )

    def create_session(params: dict[str, Any], info: RequestInfo) -> dict[str, Any]:
        return state.create_session(params, base_url=request.host_url)

    def list_line_items(params: dict[str, Any], info: RequestInfo, object_id: str) -> dict:
        return state.list_line_items(object_id, params)

    def expire_session(params: dict[str, Any], info: RequestInfo, object_id: str) -> dict:
        return state.expire_session(object_id, info, params.get("expand", []))

    route("POST", "/v1/checkout/sessions", checkout.SessionCreateParams, create_session)
    route("GET", f"{session}/line_items", checkout.SessionLineItemListParams, list_line_items)
    route("POST", f"{session}/expire", checkout.SessionExpireParams, expire_session)
    route("POST", "/v1/refunds", sdk.RefundCreateParams, state.create_refund)
    for method, rule, params_cls, call in [
        ("GET", "/v1/checkout/sessions", checkout.SessionListParams, state.list_sessions),
        ("GET", "/v1/refunds", sdk.RefundListParams, state.list_refunds),
        ("POST", "/v1/coupons", sdk.CouponCreateParams, state.create_coupon),
        ("POST", "/v1/promotion_codes", sdk.PromotionCodeCreateParams, state.create_promotion_code),
        ("GET", "/v1/promotion_codes", sdk.PromotionCodeListParams, state.list_promotion_codes),
        ("POST", "/v1/shipping_rates", sdk.ShippingRateCreateParams, state.create_shipping_rate),
        ("GET", "/v1/events", sdk.EventListParams, state.list_events),
    ]:
        route(method, rule, params_cls, with_params(call))
    for rule, params_cls, kind in [
        (session, checkout.SessionRetrieveParams, "checkout.session"),
        ("/v1/payment_intents/<object_id>", sdk.PaymentIntentRetrieveParams, "payment_intent"),
        ("/v1/charges/<object_id>", sdk.ChargeRetrieveParams, "charge"),
        ("/v1/refunds/<object_id>", sdk.RefundRetrieveParams, "refund"),
        ("/v1/coupons/<object_id>", sdk.CouponRetrieveParams, "coupon"),
        ("/v1/promotion_codes/<object_id>", sdk.PromotionCodeRetrieveParams, "promotion_code"),
        ("/v1/shipping_rates/<object_id>", sdk.ShippingRateRetrieveParams, "shipping_rate"),
        ("/v1/events/<object_id>", sdk.EventRetrieveParams, "event"),
    ]:
        route("GET", rule, params_cls, retrieve(kind))


# --- the /_emulator control API -----------------------------------------------------------


class ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def _control_body(allowed: set[str]) -> dict[str, Any]:
    if not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ControlError("the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ControlError(f"unknown field(s): {', '.join(unknown)}")
    return body


def _number(body: dict[str, Any], name: str, default: float, *, integer: bool = False) -> Any:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ControlError(f"{name} must be {'an integer' if integer else 'a number'}")
    if value < 0:
        raise ControlError(f"{name} must not be negative")
    return value


def _control(view: Callable[..., Any]) -> Callable[..., Response]:
    """JSON in, JSON out; Stripe-shaped errors from the state become the same JSON errors."""

    @functools.wraps(view)
    def wrapper(**kwargs: Any) -> Response:
        state = get_state(current_app)
        state.sweep()
        try:
            result = view(state, **kwargs)
        except ControlError as error:
            return json_response(
                {"error": {"type": "emulator_error", "message": error.message}}, error.status
            )
        except StripeAPIError as error:
            return error_response(error)
        return json_response(result)

    return wrapper


def _register_control(app: Flask) -> None:
    """JSON endpoints under /_emulator; each view receives the app's state from :func:`_control`."""

    @app.get("/_emulator/health")
    @_control
    def health(state: EmulatorState) -> dict[str, Any]:
        return {"ok": True, "now": state.now(), "api_version": objects.API_VERSION}

    @app.post("/_emulator/sessions/<session_id>/complete")
    @_control
    def complete(state: EmulatorState, session_id: str) -> dict[str, Any]:
        body = _control_body(
            {
                "payment_status",
                "email",
                "card",
                "name",
                "shipping_address",
                "shipping_rate",
                "promotion_code",
            }
        )
        status = body.get("payment_status", "paid")
        if status not in ("paid", "unpaid"):
            raise ControlError("payment_status must be 'paid' or 'unpaid'")
        default_card = "4000002500003155" if status == "unpaid" else "4242424242424242"
        snapshot = state.session_snapshot(session_id)
        if snapshot is None:
            raise resource_missing("checkout.session", session_id)
        email = body.get("email") or snapshot["customer_email"] or "customer@example.com"
        return state.complete_session(
            session_id,
            email=email,
            card=str(body.get("card", default_card)),
            name=body.get("name"),
            shipping_address=body.get("shipping_address"),
            shipping_rate=body.get("shipping_rate"),
            promotion_code=body.get("promotion_code"),
        )

    @app.post("/_emulator/sessions/<session_id>/async_result")
    @_control
    def async_result(state: EmulatorState, session_id: str) -> dict[str, Any]:
        body = _control_body({"succeeded"})
        if not isinstance(body.get("succeeded"), bool):
            raise ControlError("succeeded must be true or false")
        return state.settle_async(session_id, succeeded=body["succeeded"])

    @app.post("/_emulator/sessions/<session_id>/expire")
    @_control
    def force_expire(state: EmulatorState, session_id: str) -> dict[str, Any]:
        return state.expire_session(session_id, RequestInfo())

    @app.get("/_emulator/clock")
    @_control
    def clock(state: EmulatorState) -> dict[str, Any]:
        return {"now": state.now(), "offset": state.clock.offset, "frozen": state.clock.frozen}

    @app.post("/_emulator/clock/advance")
    @_control
    def advance_clock(state: EmulatorState) -> dict[str, Any]:
        body = _control_body({"seconds"})
        state.clock.advance(_number(body, "seconds", 0))
        expired = state.sweep()
        return {"now": state.now(), "offset": state.clock.offset, "expired": expired}

    @app.get("/_emulator/faults")
    @_control
    def get_faults(state: EmulatorState) -> dict[str, Any]:
        return state.faults.as_dict()

    @app.post("/_emulator/faults")
    @_control
    def set_faults(state: EmulatorState) -> dict[str, Any]:
        body = _control_body(set(FaultConfig().as_dict()))
        paths = body.get("paths")
        if paths is not None and not (
            isinstance(paths, list) and all(isinstance(p, str) for p in paths)
        ):
            raise ControlError("paths must be a list of path prefixes")
        fail_status = _number(body, "fail_status", 500, integer=True)
        if not 400 <= fail_status <= 599:
            raise ControlError("fail_status must be an HTTP error status (400-599)")
        config = FaultConfig(
            delay_seconds=float(_number(body, "delay_seconds", 0.0)),
            fail_next=_number(body, "fail_next", 0, integer=True),
            fail_status=fail_status,
            timeout_next=_number(body, "timeout_next", 0, integer=True),
            hang_seconds=float(_number(body, "hang_seconds", 10.0)),
            paths=paths,
        )
        state.set_faults(config)
        return config.as_dict()

    @app.get("/_emulator/webhooks")
    @_control
    def get_webhooks(state: EmulatorState) -> dict[str, Any]:
        return state.webhooks.config.as_dict()

    @app.post("/_emulator/webhooks")
    @_control
    def configure_webhooks(state: EmulatorState) -> dict[str, Any]:
        body = _control_body(set(state.webhooks.config.as_dict()))
        try:
            return state.webhooks.configure(**body).as_dict()
        except ValueError as error:
            raise ControlError(str(error)) from None

    @app.post("/_emulator/webhooks/flush")
    @_control
    def flush_webhooks(state: EmulatorState) -> dict[str, Any]:
        body = _control_body({"timeout"})
        flushed = state.webhooks.flush(float(_number(body, "timeout", 10.0)))
        return {"flushed": flushed, "pending": state.webhooks.pending()}

    @app.get("/_emulator/requests")
    @_control
    def received_requests(state: EmulatorState) -> dict[str, Any]:
        after = request.args.get("after", "0")
        if not after.isascii() or not after.isdigit():
            raise ControlError("after must be a whole number")
        return state.received(request.args.get("path") or None, int(after))

    @app.get("/_emulator/deliveries")
    @_control
    def deliveries(state: EmulatorState) -> dict[str, Any]:
        data = state.webhooks.deliveries()
        event_id = request.args.get("event")
        if event_id:
            data = [entry for entry in data if entry["event_id"] == event_id]
        return {"data": data}

    @app.post("/_emulator/events/<event_id>/resend")
    @_control
    def resend(state: EmulatorState, event_id: str) -> dict[str, Any]:
        state.resend_event(event_id)
        return {"resent": event_id}

    @app.post("/_emulator/reset")
    @_control
    def reset(state: EmulatorState) -> dict[str, Any]:
        state.reset()
        return {"reset": True, "now": state.now()}

"""Prometheus metrics (docs/OPERATIONS.md has the list): what a drop, Stripe, webhooks, the
worker and the database pool are doing, served at ``/metrics`` to Prometheus only.

Under gunicorn the workers are separate processes, so the metrics are kept in
``PROMETHEUS_MULTIPROC_DIR`` (``gunicorn.conf.py`` makes one when it is not set) and a scrape
of any worker adds up every process's files, the worker's (``flask shop worker``) too when it
shares the directory. Without the variable (``flask shop serve``, tests) they live in this
process.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import os
import time

from flask import Flask, g, request
from flask_limiter.errors import RateLimitExceeded
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event

from shop.errors import ShopError

HTTP_REQUESTS = Counter(
    "shop_http_requests_total",
    "Answers by endpoint (storefront.drop: drop pages, storefront.drop_stock: stock JSON), "
    "method and status",
    ["endpoint", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "shop_http_request_duration_seconds",
    "Time from the first request hook to the answer, by endpoint",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HOLDS = Counter(
    "shop_holds_total",
    "Buy attempts: result is taken, or why it was refused (sold_out, limit_reached, "
    "drop_not_live, too_many_requests, …)",
    ["result"],
)
STRIPE_CALLS = Counter(
    "shop_stripe_calls_total",
    "Stripe API calls by operation and outcome (ok, rejected, unavailable, error)",
    ["operation", "outcome"],
)
STRIPE_SECONDS = Histogram(
    "shop_stripe_call_duration_seconds",
    "Stripe API call latency, retries included, by operation",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20),
)
WEBHOOK_EVENTS = Counter(
    "shop_webhook_events_total",
    "Stripe webhook deliveries by event type and result (paid, released, duplicate, ignored, "
    "…; invalid when unverifiable, retry when Stripe must deliver again)",
    ["type", "result"],
)
JOB_RUNS = Counter(
    "shop_worker_job_runs_total",
    "Worker job runs (sweep, notices, outbox) by outcome (ok, problems, crashed)",
    ["job", "outcome"],
)
JOB_SECONDS = Histogram(
    "shop_worker_job_duration_seconds",
    "Worker job run time",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120),
)
JOB_ACTIVITY = Counter(
    "shop_worker_job_activity_total",
    "Things the worker's jobs did (holds swept, notices written, messages handled)",
    ["job"],
)
DB_POOL_IN_USE = Gauge(
    "shop_db_pool_connections_in_use",
    "Database connections checked out of the pools of the live processes",
    multiprocess_mode="livesum",
)
DB_POOL_OPEN = Gauge(
    "shop_db_pool_connections_open",
    "Database connections the live processes' pools hold open",
    multiprocess_mode="livesum",
)
DB_POOL_CAPACITY = Gauge(
    "shop_db_pool_capacity",
    "Connections the live processes' pools may open (SHOP_DB_POOL_SIZE + "
    "SHOP_DB_POOL_OVERFLOW each, on PostgreSQL)",
    multiprocess_mode="livesum",
)
QUEUE_WAITING = Gauge(
    "shop_waiting_room_waiting",
    "Visitors waiting in a drop's waiting room, as the latest queue page saw it (one number "
    "for the shop: a label per drop would grow without bound)",
    multiprocess_mode="mostrecent",
)
QUEUE_VISITS = Counter(
    "shop_waiting_room_visits_total",
    "Queue page answers while a room was open, by outcome (waiting, admitted)",
    ["outcome"],
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def init_app(app: Flask) -> None:
    """Count every answer, and watch the app's database pool."""
    app.after_request(_count_request)
    from shop.extensions import db

    with app.app_context():
        engine = db.engine
    capacity = (
        app.config["SHOP_DB_POOL_SIZE"] + app.config["SHOP_DB_POOL_OVERFLOW"]
        if engine.dialect.name == "postgresql"
        else None
    )

    # Counted in the process that uses the pool: create_app opens nothing, and a gunicorn
    # master that preloads the app never connects.
    @event.listens_for(engine, "first_connect")
    def _first_connect(*_args) -> None:
        if capacity is not None:
            DB_POOL_CAPACITY.inc(capacity)

    event.listen(engine, "connect", lambda *_: DB_POOL_OPEN.inc())
    event.listen(engine, "close", lambda *_: DB_POOL_OPEN.dec())
    event.listen(engine, "close_detached", lambda *_: DB_POOL_OPEN.dec())
    event.listen(engine, "checkout", lambda *_: DB_POOL_IN_USE.inc())
    event.listen(engine, "checkin", lambda *_: DB_POOL_IN_USE.dec())


def _count_request(response):
    # g.started is set by shop.logs, first of all hooks
    count_answer(request.endpoint, request.method, response.status_code, g.get("started"))
    return response


@functools.cache
def _labelled(metric, *values: str):
    """The child of ``metric`` for these label values, found once per process: prometheus
    looks a child up under a lock and rebuilds its key on every ``labels`` call, a cost the
    fast paths pay on every answer. The values are few (endpoints, methods, statuses, codes)."""
    return metric.labels(*values)


def count_answer(endpoint: str | None, method: str, status: int, started: float | None) -> None:
    """One answer counted, with its time; the app's hook and ``shop.fast_path`` both count."""
    endpoint = endpoint or "none"
    method = method if method in _METHODS else "other"
    _labelled(HTTP_REQUESTS, endpoint, method, str(status)).inc()
    if started is not None:
        _labelled(HTTP_SECONDS, endpoint).observe(time.perf_counter() - started)


# --- what the code counts ------------------------------------------------------------------


def hold_taken() -> None:
    _labelled(HOLDS, "taken").inc()


def counts_refused_holds(view):
    """Count each refusal of the buy view by its reason, the error's code (a rate limit's
    429 too), and let the error go on to the one place that answers it."""

    @functools.wraps(view)
    def counted(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except ShopError as error:
            hold_refused(error.code)
            raise
        except RateLimitExceeded:
            HOLDS.labels("too_many_requests").inc()
            raise

    return counted


def hold_refused(code: str) -> None:
    """A buy refused, by the refusal's code (an answer made outside the view counts too)."""
    _labelled(HOLDS, code).inc()


def queue_visit(waiting: int, *, admitted: bool) -> None:
    QUEUE_WAITING.set(waiting)
    QUEUE_VISITS.labels("admitted" if admitted else "waiting").inc()


def stripe_call(operation: str, outcome: str, seconds: float) -> None:
    STRIPE_CALLS.labels(operation, outcome).inc()
    STRIPE_SECONDS.labels(operation).observe(seconds)


def webhook_event(event_type: str, result: str) -> None:
    WEBHOOK_EVENTS.labels(event_type, result).inc()


def job_run(job: str, outcome: str, seconds: float, activity: int) -> None:
    JOB_RUNS.labels(job, outcome).inc()
    JOB_SECONDS.labels(job).observe(seconds)
    if activity:
        JOB_ACTIVITY.labels(job).inc(activity)


# --- the scrape ----------------------------------------------------------------------------


def may_scrape(config, *, authorization: str | None, client: str | None, proxied: bool) -> bool:
    """With ``SHOP_METRICS_TOKEN``: only a request bearing it, from anywhere. Without: only
    a client in ``SHOP_METRICS_NETWORKS`` — and never one that came through a proxy the shop
    does not count (``SHOP_PROXY_COUNT`` 0), whose address would be the proxy's."""
    token = config.get("SHOP_METRICS_TOKEN")
    if token:
        scheme, _, offered = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            offered.strip().encode(), token.encode()
        )
    if proxied and not config.get("SHOP_PROXY_COUNT"):
        return False
    try:
        address = ipaddress.ip_address(client or "")
    except ValueError:
        return False
    return any(address in network for network in config.get("SHOP_METRICS_NETWORKS") or ())


def exposition() -> tuple[bytes, str]:
    """Every process's metrics in Prometheus's text format, and its content type."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

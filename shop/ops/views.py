"""``/healthz`` (the process answers), ``/readyz`` (it can serve: database and Redis) and
``/metrics`` (Prometheus, for the token or the allowed networks only); none is rate-limited,
and the request log writes them at DEBUG only (docs/OPERATIONS.md)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, jsonify, request

from shop import health, metrics
from shop.extensions import limiter

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
@limiter.exempt
def healthz():
    """The process is up and answering: no database, no Redis, nothing else asked."""
    return _uncached(jsonify(status="ok"))


@bp.get("/readyz")
@limiter.exempt
def readyz():
    """200 when the database answers and is migrated to head and Redis (when configured)
    answers; otherwise 503 naming what fails, within ``health.DEADLINE`` seconds."""
    readiness = health.readiness(current_app._get_current_object())  # type: ignore[attr-defined]
    response = jsonify(
        status="ready" if readiness.ready else "not ready",
        failing=readiness.failing,
        checks=readiness.checks,
    )
    response.status_code = 200 if readiness.ready else 503
    return _uncached(response)


@bp.get("/metrics")
@limiter.exempt
def scrape():
    """Every process's metrics in Prometheus's text format; 403 for anyone without the token
    (``SHOP_METRICS_TOKEN``) or, without one, outside ``SHOP_METRICS_NETWORKS``."""
    if not metrics.may_scrape(
        current_app.config,
        authorization=request.headers.get("Authorization"),
        client=request.remote_addr,
        proxied="X-Forwarded-For" in request.headers,
    ):
        abort(403)
    body, content_type = metrics.exposition()
    return _uncached(Response(body, content_type=content_type))


def _uncached(response):
    response.headers["Cache-Control"] = "no-store"
    return response

"""Stripe's webhook endpoint: unauthenticated but signature-verified, CSRF-exempt, never
rate-limited, and quick (verify, apply, answer)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from shop import clock, metrics, payments, webhooks
from shop.extensions import csrf, limiter

bp = Blueprint("payments", __name__, url_prefix="/stripe")


@bp.post("/webhook")
@csrf.exempt
@limiter.exempt
def webhook():
    """200 once an event is applied (or was already); 400 for anything unverifiable; 5xx only
    when Stripe itself could not be reached mid-way, so that Stripe delivers the event again."""
    try:
        event = payments.verify_webhook(
            request.get_data(cache=False), request.headers.get("Stripe-Signature"), now=clock.now()
        )
    except payments.InvalidWebhook:
        metrics.webhook_event("unverified", "invalid")
        raise
    try:
        outcome = webhooks.handle_event(event, now=clock.now())
    except Exception:  # Stripe delivers it again
        metrics.webhook_event(event.type, "retry")
        raise
    metrics.webhook_event(event.type, outcome)
    return jsonify(received=True, outcome=outcome)

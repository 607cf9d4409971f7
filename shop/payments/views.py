"""Stripe's webhook endpoint (CSRF-exempt, signature-verified)."""

from flask import Blueprint

bp = Blueprint("payments", __name__, url_prefix="/stripe")

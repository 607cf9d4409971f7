"""From a hold to Stripe Checkout and back: success and cancel pages."""

from flask import Blueprint

bp = Blueprint("checkout", __name__, url_prefix="/checkout")

"""The maker console: products, batches, drops, orders."""

from flask import Blueprint, render_template

from shop.auth import maker_required

bp = Blueprint("maker", __name__, url_prefix="/maker")


@bp.get("/")
@maker_required
def dashboard():
    return render_template("maker/dashboard.html")

"""The maker console's blueprint, its shared view helpers, and the overview pages.

The console's routes are split by what they manage: ``product_views`` (products, batches,
images), ``drop_views`` (drops, opening and closing, live numbers) and ``order_views`` (orders,
shipping, refunds, CSV). Every route is for makers only (``maker_required``) and loads objects
through the services' scoped lookups (``products.batch_for(current_user, …)``,
``drops.drop_for``, ``sales.order_for``), so another maker's object is a 404. Views parse →
authorize → call a service → commit once → respond.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flask import (
    Blueprint,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from shop import (
    audit,
    clock,
    ledger,
    markdown,
    numbers,
    products,
    reports,
    sales,
    timezones,
    users,
)
from shop.auth import maker_required
from shop.errors import InvalidInput, ShopError
from shop.extensions import db
from shop.forms import invalid_status
from shop.maker import forms

bp = Blueprint("maker", __name__, url_prefix="/maker")

MAX_PREVIEW_CHARS = 20000
HISTORY_PAGE = 100


def on_error(render: Callable[[ShopError], str]) -> None:
    """Show a domain error on this view's own page (with its status), after a rollback so the
    page reads what the database holds, not the refused change."""

    def renderer(error: ShopError) -> str:
        db.session.rollback()
        return render(error)

    g.render_error = renderer


def local_time(value: datetime | None) -> datetime | None:
    return timezones.to_local(value, current_user.timezone)


def utc_time(value: datetime | None) -> datetime | None:
    return timezones.to_utc(value, current_user.timezone) if value is not None else None


# --------------------------------------------------------------------------- overview


@bp.get("/")
@maker_required
def dashboard():
    now = clock.now()
    return render_template(
        "maker/dashboard.html",
        drops=reports.drop_summaries(current_user, now),
        products=products.products_of(current_user),
        recent=sales.recent_orders(current_user),
        numbers=reports.dashboard_numbers(current_user),
        ledger_check=ledger.latest(),
        now=now,
    )


@bp.get("/history")
@maker_required
def history():
    """Everything done in the maker's shop, newest first, a page at a time."""
    before = numbers.parse_whole(request.args.get("before"), low=1)
    entries = audit.maker_trail(current_user, before=before, limit=HISTORY_PAGE + 1)
    return render_template(
        "maker/history.html",
        entries=entries[:HISTORY_PAGE],
        older=entries[HISTORY_PAGE - 1].id if len(entries) > HISTORY_PAGE else None,
    )


@bp.route("/settings", methods=["GET", "POST"])
@maker_required
def settings():
    form = forms.SettingsForm(obj=current_user)
    if not form.validate_on_submit():
        return render_template("maker/settings.html", form=form), invalid_status(form)
    users.update_settings(
        current_user,
        display_name=form.display_name.data,
        timezone=form.timezone.data,
        tax_mode=form.tax_mode.data,
        actor=current_user,
    )
    db.session.commit()
    flash(f"Saved. Times are now shown in {current_user.timezone}.", "success")
    return redirect(url_for("maker.settings"), 303)


@bp.post("/preview")
@maker_required
def preview_markdown():
    """Markdown → sanitized HTML for the live preview (JSON in, JSON out, CSRF-protected)."""
    payload = request.get_json(silent=True)
    source = payload.get("markdown") if isinstance(payload, dict) else None
    if not isinstance(source, str):
        raise InvalidInput('Send JSON like {"markdown": "..."}.')
    if len(source) > MAX_PREVIEW_CHARS:
        raise InvalidInput(f"Stories can be at most {MAX_PREVIEW_CHARS:,} characters.")
    return jsonify(html=str(markdown.render(source)))

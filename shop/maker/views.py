"""The maker console: products, batches, drops, orders.

Every route is for makers only (``maker_required``) and loads objects through
``shop.makers.*_for(current_user, …)``, so another maker's product, batch, drop or order is a
404. Views parse → authorize → call a service → commit once → respond.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from shop import clock, drops, images, makers, markdown, orders, templating
from shop.auth import maker_required
from shop.errors import InvalidInput, InvalidState, PaymentUnavailable, ShopError
from shop.extensions import db
from shop.maker import forms
from shop.models.drop import CLOSED
from shop.models.order import PAID, REFUNDED

bp = Blueprint("maker", __name__, url_prefix="/maker")

MAX_PREVIEW_CHARS = 20000


def _on_error(render: Callable[[ShopError], str]) -> None:
    """Show a domain error on this view's own page (with its status), after a rollback so the
    page reads what the database holds, not the refused change."""

    def renderer(error: ShopError) -> str:
        db.session.rollback()
        return render(error)

    g.render_error = renderer


def _local(value: datetime | None) -> datetime | None:
    return makers.to_local(value, current_user.timezone)


def _utc(value: datetime | None) -> datetime | None:
    return makers.to_utc(value, current_user.timezone) if value is not None else None


def _invalid(form) -> int:
    return 422 if request.method == "POST" else 200


# --------------------------------------------------------------------------- overview


@bp.get("/")
@maker_required
def dashboard():
    now = clock.now()
    return render_template(
        "maker/dashboard.html",
        drops=makers.drop_summaries(current_user, now),
        products=makers.products_of(current_user),
        recent=makers.recent_orders(current_user),
        numbers=makers.dashboard_numbers(current_user),
        now=now,
    )


@bp.route("/settings", methods=["GET", "POST"])
@maker_required
def settings():
    form = forms.SettingsForm(obj=current_user)
    if not form.validate_on_submit():
        return render_template("maker/settings.html", form=form), _invalid(form)
    makers.update_settings(
        current_user, display_name=form.display_name.data, timezone=form.timezone.data
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


# --------------------------------------------------------------------------- products


@bp.get("/products")
@maker_required
def products():
    return render_template("maker/products.html", products=makers.products_of(current_user))


@bp.route("/products/new", methods=["GET", "POST"])
@maker_required
def new_product():
    form = forms.ProductForm()

    def page(error: str | None = None):
        return render_template("maker/product_form.html", form=form, product=None, error=error)

    if not form.validate_on_submit():
        return page(), _invalid(form)
    _on_error(lambda e: page(e.message))
    product = makers.create_product(
        current_user, name=form.name.data, description=form.description.data
    )
    db.session.commit()
    flash(f"{product.name} is saved. Add its first batch.", "success")
    return redirect(url_for("maker.new_batch", product_id=product.id), 303)


@bp.route("/products/<int:product_id>", methods=["GET", "POST"])
@maker_required
def product(product_id: int):
    found = makers.product_for(current_user, product_id)
    form = forms.ProductForm(obj=found)

    def page(error: str | None = None):
        return render_template(
            "maker/product_form.html", form=form, product=found, error=error, now=clock.now()
        )

    if not form.validate_on_submit():
        return page(), _invalid(form)
    _on_error(lambda e: page(e.message))
    makers.update_product(found, name=form.name.data, description=form.description.data)
    db.session.commit()
    flash("Product saved.", "success")
    return redirect(url_for("maker.product", product_id=found.id), 303)


# --------------------------------------------------------------------------- batches


@bp.route("/products/<int:product_id>/batches/new", methods=["GET", "POST"])
@maker_required
def new_batch(product_id: int):
    found = makers.product_for(current_user, product_id)
    form = forms.BatchForm()
    if request.method == "GET":
        form.number.data = makers.next_batch_number(found)
        previous = found.batches[-1] if found.batches else None
        if previous is not None:  # most makers repeat their last batch's terms
            form.currency.data = previous.currency
            form.unit_label.data = previous.unit_label
            form.unit_singular.data = previous.unit_singular
            form.per_customer_limit.data = previous.per_customer_limit

    def page(error: str | None = None):
        return render_template(
            "maker/batch_form.html", form=form, product=found, batch=None, error=error
        )

    if not form.validate_on_submit():
        return page(), _invalid(form)
    _on_error(lambda e: page(e.message))
    batch = makers.create_batch(found, form.details())
    db.session.commit()
    flash(f"{batch.title} is saved. Add a picture, then put it in a drop.", "success")
    return redirect(url_for("maker.batch", batch_id=batch.id) + "#images", 303)


def _batch_form(batch, *, submitted: bool) -> forms.BatchForm:
    """The batch form with what was posted, or filled from the batch as stored."""
    if submitted:
        return forms.BatchForm()
    form = forms.BatchForm(formdata=None, obj=batch)
    form.unit_price.data = makers.decimal_amount(batch.price, batch.currency)
    form.making.data = batch.process
    return form


@bp.route("/batches/<int:batch_id>", methods=["GET", "POST"])
@maker_required
def batch(batch_id: int):
    found = makers.batch_for(current_user, batch_id)
    form = _batch_form(found, submitted=request.method == "POST")
    now = clock.now()

    def page(error: str | None = None):
        fresh = makers.batch_for(current_user, batch_id)
        return render_template(
            "maker/batch_form.html",
            form=form,
            product=fresh.product,
            batch=fresh,
            error=error,
            opened=makers.has_opened(fresh.drop, clock.now()),
            image_form=forms.ImageForm(formdata=None),
        )

    if not form.validate_on_submit():
        return page(), _invalid(form)
    _on_error(lambda e: page(e.message))
    changed = makers.update_batch(found, form.details(), actor=current_user, now=now)
    db.session.commit()
    if changed:
        flash(f"Saved: {', '.join(changed)} updated.", "success")
    else:
        flash("Nothing changed.", "info")
    return redirect(url_for("maker.batch", batch_id=found.id), 303)


@bp.post("/batches/<int:batch_id>/images")
@maker_required
def upload_image(batch_id: int):
    found = makers.batch_for(current_user, batch_id)
    form = forms.ImageForm()
    batch_form = _batch_form(found, submitted=False)

    def page(error: str | None = None):
        return render_template(
            "maker/batch_form.html",
            form=batch_form,
            product=found.product,
            batch=makers.batch_for(current_user, batch_id),
            error=None,
            image_error=error,
            opened=makers.has_opened(found.drop, clock.now()),
            image_form=form,
        )

    if not form.validate_on_submit():
        return page(), 422
    _on_error(lambda e: page(e.message))
    image = makers.add_image(
        found, form.image.data.read(), alt=form.alt.data, actor=current_user, now=clock.now()
    )
    try:
        db.session.commit()
    except Exception:
        images.discard(image.filename)
        raise
    flash("Image added.", "success")
    return redirect(url_for("maker.batch", batch_id=found.id) + "#images", 303)


@bp.post("/images/<int:image_id>/alt")
@maker_required
def update_image(image_id: int):
    image = makers.image_for(current_user, image_id)
    form = forms.AltForm()
    if not form.validate_on_submit():
        flash("Describe the picture in a few words.", "error")
        return redirect(url_for("maker.batch", batch_id=image.batch_id) + "#images", 303)
    makers.update_image_alt(image, form.alt.data)
    db.session.commit()
    flash("Image description saved.", "success")
    return redirect(url_for("maker.batch", batch_id=image.batch_id) + "#images", 303)


@bp.post("/images/<int:image_id>/delete")
@maker_required
def delete_image(image_id: int):
    image = makers.image_for(current_user, image_id)
    batch_id = image.batch_id
    form = forms.ConfirmForm()
    if not form.validate_on_submit():
        return redirect(url_for("maker.batch", batch_id=batch_id) + "#images", 303)
    filename = makers.remove_image(image, actor=current_user, now=clock.now())
    db.session.commit()
    images.discard(filename)
    flash("Image removed.", "success")
    return redirect(url_for("maker.batch", batch_id=batch_id) + "#images", 303)


# --------------------------------------------------------------------------- drops


@bp.get("/drops", endpoint="drops")
@maker_required
def drops_list():
    now = clock.now()
    return render_template(
        "maker/drops.html", drops=makers.drop_summaries(current_user, now), now=now
    )


def _drop_details(form: forms.DropForm) -> makers.DropDetails:
    return makers.DropDetails(
        title=form.title.data,
        slug=form.slug.data or "",
        story=form.story.data or "",
        batch_ids=list(form.batches.data or []),
        opens_at=_utc(form.opens_local.data),
        closes_at=_utc(form.closes_local.data),
    )


@bp.route("/drops/new", methods=["GET", "POST"])
@maker_required
def new_drop():
    form = forms.DropForm()
    form.set_batch_choices(makers.assignable_batches(current_user))
    if request.method == "GET" and request.args.get("batch", "").isdigit():
        form.batches.data = [int(request.args["batch"])]

    def page(error: str | None = None):
        return render_template("maker/drop_form.html", form=form, drop=None, error=error)

    if not form.validate_on_submit():
        return page(), _invalid(form)
    _on_error(lambda e: page(e.message))
    drop = makers.create_drop(
        current_user, _drop_details(form), actor=current_user, now=clock.now()
    )
    db.session.commit()
    flash("Draft saved. Customers can't see it until you open it.", "success")
    return redirect(url_for("maker.drop", drop_id=drop.id), 303)


@bp.get("/drops/<int:drop_id>")
@maker_required
def drop(drop_id: int):
    found = makers.drop_for(current_user, drop_id)
    now = clock.now()
    return render_template(
        "maker/drop.html",
        drop=found,
        now=now,
        phase=found.phase(now),
        stats=makers.live_stats(found, now, recent=5),
        trail=makers.audit_trail(found),
    )


@bp.route("/drops/<int:drop_id>/edit", methods=["GET", "POST"])
@maker_required
def edit_drop(drop_id: int):
    found = makers.drop_for(current_user, drop_id)
    form = forms.DropForm(obj=found)
    form.set_batch_choices(makers.assignable_batches(current_user, found))
    if request.method == "GET":
        form.batches.data = [b.id for b in found.batches]
        form.opens_local.data = _local(found.opens_at)
        form.closes_local.data = _local(found.closes_at)

    def page(error: str | None = None):
        fresh = makers.drop_for(current_user, drop_id)
        return render_template("maker/drop_form.html", form=form, drop=fresh, error=error)

    if not form.validate_on_submit():
        return page(), _invalid(form)
    _on_error(lambda e: page(e.message))
    makers.update_drop(found, _drop_details(form), actor=current_user, now=clock.now())
    db.session.commit()
    flash("Drop saved.", "success")
    return redirect(url_for("maker.drop", drop_id=found.id), 303)


def _preset_when(form, planned: datetime | None, now: datetime) -> None:
    """Start the confirm form on the time already planned, if it is still ahead."""
    ahead = planned if planned is not None and planned > now else None
    form.when.data = "later" if ahead else "now"
    form.at.data = _local(ahead)


def _when(form, now: datetime) -> datetime | None:
    """``None`` for "now", else the future UTC time the maker entered in their zone."""
    if form.when.data != "later":
        return None
    if form.at.data is None:
        raise InvalidInput("Enter the date and time, or choose “now”.")
    at = makers.to_utc(form.at.data, current_user.timezone)
    if at <= now:
        raise InvalidInput("That time has already passed; choose a later one or “now”.")
    return at


@bp.route("/drops/<int:drop_id>/open", methods=["GET", "POST"])
@maker_required
def open_drop(drop_id: int):
    found = makers.drop_for(current_user, drop_id)
    form = forms.OpenDropForm()
    now = clock.now()
    if request.method == "GET":
        _preset_when(form, found.opens_at, now)

    def page(error: str | None = None):
        fresh = makers.drop_for(current_user, drop_id)
        return render_template(
            "maker/confirm_open.html", form=form, drop=fresh, now=clock.now(), error=error
        )

    if not form.validate_on_submit():
        return page(), _invalid(form)
    _on_error(lambda e: page(e.message))
    drops.open_drop(found, actor=current_user, now=now, at=_when(form, now))
    db.session.commit()
    if found.is_live(now):
        flash(f"{found.title} is open. Customers can buy now.", "success")
        return redirect(url_for("maker.live_drop", drop_id=found.id), 303)
    flash(f"{found.title} is scheduled. It opens on its own at the time you chose.", "success")
    return redirect(url_for("maker.drop", drop_id=found.id), 303)


@bp.route("/drops/<int:drop_id>/close", methods=["GET", "POST"])
@maker_required
def close_drop(drop_id: int):
    found = makers.drop_for(current_user, drop_id)
    form = forms.CloseDropForm()
    now = clock.now()
    if request.method == "GET":
        _preset_when(form, found.closes_at, now)

    def page(error: str | None = None):
        fresh = makers.drop_for(current_user, drop_id)
        n = clock.now()
        return render_template(
            "maker/confirm_close.html",
            form=form,
            drop=fresh,
            now=n,
            stats=makers.live_stats(fresh, n),
            error=error,
        )

    if not form.validate_on_submit():
        return page(), _invalid(form)
    _on_error(lambda e: page(e.message))
    drops.close_drop(found, actor=current_user, now=now, at=_when(form, now))
    db.session.commit()
    if found.state == CLOSED:
        flash(
            f"{found.title} is closed. Customers already checking out can finish paying "
            "until their hold runs out.",
            "success",
        )
    else:
        flash(f"{found.title} will close on its own at the time you chose.", "success")
    return redirect(url_for("maker.drop", drop_id=found.id), 303)


def _confirmed_drop_change(drop_id: int, change, done: str):
    """A one-click change to a drop behind the confirm form; back to the drop either way."""
    found = makers.drop_for(current_user, drop_id)
    if forms.ConfirmForm().validate_on_submit():
        change(found, actor=current_user, now=clock.now())
        db.session.commit()
        flash(done, "success")
    return redirect(url_for("maker.drop", drop_id=found.id), 303)


@bp.post("/drops/<int:drop_id>/unschedule")
@maker_required
def unschedule_drop(drop_id: int):
    return _confirmed_drop_change(
        drop_id,
        drops.unschedule_drop,
        "Back to draft. It won't open until you open or schedule it again.",
    )


@bp.post("/drops/<int:drop_id>/keep-open")
@maker_required
def cancel_close(drop_id: int):
    return _confirmed_drop_change(
        drop_id,
        drops.cancel_scheduled_close,
        "The closing time is removed; the drop stays open until you close it.",
    )


@bp.get("/drops/<int:drop_id>/live")
@maker_required
def live_drop(drop_id: int):
    found = makers.drop_for(current_user, drop_id)
    now = clock.now()
    return render_template(
        "maker/live.html", drop=found, stats=makers.live_stats(found, now), now=now
    )


@bp.get("/drops/<int:drop_id>/live.json")
@maker_required
def live_drop_data(drop_id: int):
    """What the live page polls: the numbers, and the panel re-rendered from the same template."""
    found = makers.drop_for(current_user, drop_id)
    now = clock.now()
    stats = makers.live_stats(found, now)
    response = jsonify(
        html=render_template("maker/_live_panel.html", drop=found, stats=stats, now=now),
        **stats.as_json(),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# --------------------------------------------------------------------------- orders


def _filter_form() -> forms.OrderFilterForm:
    form = forms.OrderFilterForm(formdata=request.args)
    form.set_choices(makers.drops_of(current_user), makers.batches_of(current_user))
    return form


@bp.get("/orders", endpoint="orders")
@maker_required
def orders_list():
    form = _filter_form()
    page = form.page_number()
    rows, more = makers.list_orders(current_user, form.filters(), page=page)
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template(
        "maker/orders.html", form=form, orders=rows, page=page, more=more, args=args
    )


@bp.get("/orders.csv")
@maker_required
def orders_csv():
    form = _filter_form()
    body = makers.orders_csv(current_user, form.filters())
    stamp = clock.now().strftime("%Y%m%d-%H%M")
    return Response(
        "\ufeff" + body,  # a BOM so spreadsheets read the file as UTF-8
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="orders-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


def _order_page(order, *, ship_form=None, error=None, status=200):
    return (
        render_template(
            "maker/order.html",
            order=order,
            address=makers.shipping_lines(order.shipping),
            ship_form=ship_form or forms.ShipForm(obj=order, formdata=None),
            trail=makers.order_trail(order),
            error=error,
        ),
        status,
    )


@bp.get("/orders/<public_id>")
@maker_required
def order(public_id: str):
    return _order_page(makers.order_for(current_user, public_id))


@bp.post("/orders/<public_id>/ship")
@maker_required
def ship_order(public_id: str):
    found = makers.order_for(current_user, public_id)
    form = forms.ShipForm()
    if not form.validate_on_submit():
        return _order_page(found, ship_form=form, status=422)
    _on_error(
        lambda e: _order_page(
            makers.order_for(current_user, public_id), ship_form=form, error=e.message
        )[0]
    )
    first = makers.mark_shipped(
        found,
        carrier=form.carrier.data,
        tracking_number=form.tracking_number.data,
        actor=current_user,
        now=clock.now(),
    )
    db.session.commit()
    flash("Marked shipped." if first else "Tracking details updated.", "success")
    return redirect(url_for("maker.order", public_id=public_id), 303)


@bp.route("/orders/<public_id>/refund", methods=["GET", "POST"])
@maker_required
def refund_order(public_id: str):
    """Refund a whole paid order after an explicit confirmation; exactly once however many
    times it is submitted (``shop.orders.refund_order`` decides that, with Stripe)."""
    found = makers.order_for(current_user, public_id)
    form = forms.RefundForm()

    def page(error: str | None = None):
        return render_template(
            "maker/confirm_refund.html",
            form=form,
            order=makers.order_for(current_user, public_id),
            error=error,
        )

    _on_error(lambda e: page(e.message))
    if request.method == "POST" and found.state == REFUNDED:
        raise InvalidState("This order has already been refunded — there is nothing more to do.")
    if not form.validate_on_submit():
        return page(), _invalid(form)
    if found.state != PAID:
        raise InvalidState("Only a paid order can be refunded.")
    try:
        orders.refund_order(found, actor=current_user, now=clock.now())
    except PaymentUnavailable as pending:  # recorded, and retried until Stripe confirms
        flash(pending.message, "warning")
        return redirect(url_for("maker.order", public_id=public_id), 303)
    db.session.commit()
    flash("Refunded. The customer's card will show it within a few days.", "success")
    return redirect(url_for("maker.order", public_id=public_id), 303)


_WHEN = re.compile(r"^(opens|closes) (\d{4}-\d\d-\d\dT[0-9:.]+(?:[+-]\d\d:\d\d|Z)?)$")


@bp.app_template_filter("audit_detail")
def audit_detail(entry) -> str:
    """An audit entry's detail for people: recorded times shown in the reader's time zone."""
    found = _WHEN.match(entry.detail or "")
    if found is None:
        return entry.detail or ""
    if entry.action == "drop.opened":
        return ""  # the entry's own time says it
    at = datetime.fromisoformat(found.group(2).replace("Z", "+00:00"))
    return f"{found.group(1)} {templating.format_datetime(at)}"

"""The maker console: orders — list, CSV, shipping and refunds."""

from __future__ import annotations

from flask import (
    Response,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from shop import (
    audit,
    clock,
    drops,
    exports,
    money,
    outbox,
    products,
    refunds,
    sales,
    shipping,
)
from shop.auth import maker_required
from shop.errors import InvalidState, PaymentUnavailable
from shop.extensions import db
from shop.forms import ButtonForm, invalid_status
from shop.maker import forms
from shop.maker.views import bp, on_error
from shop.models.order import PAID, REFUNDED


def _filter_form() -> forms.OrderFilterForm:
    form = forms.OrderFilterForm(formdata=request.args)
    form.set_choices(drops.drops_of(current_user), products.batches_of(current_user))
    return form


@bp.get("/orders", endpoint="orders")
@maker_required
def orders_list():
    form = _filter_form()
    page = form.page_number()
    rows, more = sales.list_orders(current_user, form.filters(), page=page)
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template(
        "maker/orders.html", form=form, orders=rows, page=page, more=more, args=args
    )


@bp.get("/orders.csv")
@maker_required
def orders_csv():
    form = _filter_form()
    body = exports.orders_csv(current_user, form.filters())
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
            address=shipping.shipping_lines(order.shipping),
            ship_form=ship_form or forms.ShipForm(obj=order, formdata=None),
            trail=audit.order_trail(order),
            messages=outbox.for_order(order),
            retry_form=ButtonForm(),
            error=error,
        ),
        status,
    )


@bp.get("/orders/<public_id>")
@maker_required
def order(public_id: str):
    return _order_page(sales.order_for(current_user, public_id))


@bp.post("/orders/<public_id>/ship")
@maker_required
def ship_order(public_id: str):
    found = sales.order_for(current_user, public_id)
    form = forms.ShipForm()
    if not form.validate_on_submit():
        return _order_page(found, ship_form=form, status=422)
    on_error(
        lambda e: _order_page(
            sales.order_for(current_user, public_id), ship_form=form, error=e.message
        )[0]
    )
    first = shipping.mark_shipped(
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
    """Refund a paid order, or some of its units, after an explicit confirmation; exactly once
    however many times it is submitted (``shop.refunds`` decides that, with Stripe)."""
    found = sales.order_for(current_user, public_id)
    form = forms.RefundForm()
    form.serials.choices = [(unit.serial, f"No. {unit.serial}") for unit in found.valid_units]
    if request.method == "GET" and request.args.get("unit", "").isdigit():
        form.scope.data, form.serials.data = "units", [int(request.args["unit"])]

    def page(error: str | None = None):
        return render_template(
            "maker/confirm_refund.html",
            form=form,
            order=sales.order_for(current_user, public_id),
            error=error,
            unit_price=refunds.units_amount(found, 1),
        )

    on_error(lambda e: page(e.message))
    if request.method == "POST" and found.state == REFUNDED:
        raise InvalidState("This order has already been refunded — there is nothing more to do.")
    if not form.validate_on_submit():
        return page(), invalid_status(form)
    if found.state != PAID:
        raise InvalidState("Only a paid order can be refunded.")
    reason = (form.reason.data or "").strip() or None
    try:
        if form.scope.data == "units":
            refund = refunds.refund_units(
                found, form.serials.data, actor=current_user, now=clock.now(), reason=reason
            )
            done = f"Refunded {money.format_money(refund.amount, refund.currency)} for " + (
                ", ".join(f"No. {unit.serial}" for unit in refund.units)
            )
        else:
            refunds.refund_order(found, actor=current_user, now=clock.now(), reason=reason)
            done = "Refunded"
    except PaymentUnavailable as pending:  # recorded, and retried until Stripe confirms
        flash(pending.message, "warning")
        return redirect(url_for("maker.order", public_id=public_id), 303)
    db.session.commit()
    flash(f"{done}. The customer's card will show it within a few days.", "success")
    return redirect(url_for("maker.order", public_id=public_id), 303)

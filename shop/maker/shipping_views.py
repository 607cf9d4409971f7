"""The maker's shipping rates: a price per zone of countries, for all batches or one."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from shop import money, products, shipping_rates
from shop.auth import maker_required
from shop.errors import ShopError
from shop.extensions import db
from shop.forms import ButtonForm, invalid_status
from shop.maker import forms
from shop.maker.views import bp


def _form(rate=None) -> forms.ShippingRateForm:
    submitted = request.method == "POST"
    form = (
        forms.ShippingRateForm()
        if submitted or rate is None
        else forms.ShippingRateForm(formdata=None, obj=rate)
    )
    form.set_batch_choices(products.batches_of(current_user))
    if rate is not None and not submitted:
        form.amount.data = money.decimal_amount(rate.amount, rate.currency) if rate.amount else "0"
        form.free_above.data = (
            money.decimal_amount(rate.free_above, rate.currency) if rate.free_above else ""
        )
        form.batch.data = rate.batch_id or 0
    return form


def _page(form, *, rate=None, error: str | None = None):
    return render_template(
        "maker/shipping.html",
        rates=shipping_rates.maker_rates(current_user),
        form=form,
        rate=rate,
        error=error,
        section="settings",
    )


def _save(form, rate=None):
    def show_here(error: ShopError) -> str:
        db.session.rollback()
        return _page(form, rate=rate, error=error.message)

    g.render_error = show_here
    batch = products.batch_for(current_user, form.batch.data) if form.batch.data else None
    saved = shipping_rates.save_rate(
        current_user, form.details(), batch=batch, rate=rate, actor=current_user
    )
    db.session.commit()
    flash(f"Saved the rate “{saved.name}”. New checkouts use it.", "success")
    return redirect(url_for("maker.shipping_rates"), 303)


@bp.route("/shipping", methods=["GET", "POST"], endpoint="shipping_rates")
@maker_required
def shipping_rates_page():
    form = _form()
    if not form.validate_on_submit():
        return _page(form), invalid_status(form)
    return _save(form)


@bp.route("/shipping/<int:rate_id>", methods=["GET", "POST"])
@maker_required
def shipping_rate(rate_id: int):
    rate = shipping_rates.rate_for(current_user, rate_id)
    form = _form(rate)
    if not form.validate_on_submit():
        return _page(form, rate=rate), invalid_status(form)
    return _save(form, rate)


@bp.post("/shipping/<int:rate_id>/delete")
@maker_required
def delete_shipping_rate(rate_id: int):
    rate = shipping_rates.rate_for(current_user, rate_id)
    if not ButtonForm().validate_on_submit():
        return _page(_form(), error="The form expired. Try again."), 400
    name = rate.name
    shipping_rates.delete_rate(rate, actor=current_user)
    db.session.commit()
    flash(
        f"Removed the rate “{name}”. Orders already placed keep what they were charged.", "success"
    )
    return redirect(url_for("maker.shipping_rates"), 303)

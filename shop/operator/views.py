"""The operator console: invite makers, suspend and reinstate them, see every drop and the
payments the shop did not recognise. Only for the operator (``auth.operator_required``)."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, url_for
from flask_login import current_user

from shop import clock, operators, reports
from shop.auth import operator_required
from shop.errors import ShopError
from shop.extensions import db
from shop.forms import ButtonForm
from shop.operator.forms import InviteForm, SuspendForm

bp = Blueprint("operator", __name__, url_prefix="/operator")


def _show_on_makers(error: ShopError) -> str:
    db.session.rollback()
    return _makers_page(InviteForm(), errors=[error.message])


def _makers_page(form: InviteForm, *, errors: list[str] | None = None) -> str:
    now = clock.now()
    return render_template(
        "operator/makers.html",
        makers=operators.makers(now),
        invitations=operators.open_invitations(now),
        form=form,
        confirm=ButtonForm(),
        errors=errors or [],
        section="makers",
    )


@bp.get("/")
@operator_required
def makers():
    return _makers_page(InviteForm())


@bp.post("/invitations")
@operator_required
def invite():
    form = InviteForm()
    if not form.validate_on_submit():
        return _makers_page(form), 422
    g.render_error = _show_on_makers
    invitation = operators.invite(
        current_user, form.email.data, form.display_name.data or "", now=clock.now()
    )
    db.session.commit()
    flash(f"Invitation sent to {invitation.email}. The link works once, for seven days.", "success")
    return redirect(url_for("operator.makers"), 303)


@bp.post("/invitations/<int:invitation_id>/withdraw")
@operator_required
def withdraw(invitation_id: int):
    if not ButtonForm().validate_on_submit():
        return _makers_page(InviteForm(), errors=["The form expired. Try again."]), 400
    g.render_error = _show_on_makers
    invitation = operators.revoke(current_user, invitation_id, now=clock.now())
    db.session.commit()
    flash(f"The invitation to {invitation.email} no longer works.", "success")
    return redirect(url_for("operator.makers"), 303)


@bp.route("/makers/<int:maker_id>/suspend", methods=["GET", "POST"])
@operator_required
def suspend(maker_id: int):
    maker = operators.maker(maker_id)
    form = SuspendForm()
    if not form.validate_on_submit():
        return render_template("operator/suspend.html", maker=maker, form=form), (
            422 if form.is_submitted() else 200
        )

    def show_here(error: ShopError) -> str:
        db.session.rollback()
        return render_template("operator/suspend.html", maker=maker, form=form, error=error.message)

    g.render_error = show_here
    operators.suspend(current_user, maker, now=clock.now(), reason=form.reason.data)
    db.session.commit()
    flash(f"{maker.display_name} is suspended: their drops stopped selling.", "success")
    return redirect(url_for("operator.makers"), 303)


@bp.post("/makers/<int:maker_id>/reinstate")
@operator_required
def reinstate(maker_id: int):
    maker = operators.maker(maker_id)
    if not ButtonForm().validate_on_submit():
        return _makers_page(InviteForm(), errors=["The form expired. Try again."]), 400
    g.render_error = _show_on_makers
    operators.reinstate(current_user, maker)
    db.session.commit()
    flash(f"{maker.display_name} is reinstated: their drops sell as scheduled.", "success")
    return redirect(url_for("operator.makers"), 303)


@bp.get("/drops")
@operator_required
def drops():
    return render_template(
        "operator/drops.html", drops=operators.all_drops(), now=clock.now(), section="drops"
    )


@bp.get("/payments")
@operator_required
def unrecognised():
    return render_template(
        "operator/payments.html", payments=reports.unrecognised_payments(), section="payments"
    )

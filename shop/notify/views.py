""" "Notify me" on an upcoming drop: subscribe (one click, or an address and a confirmation),
confirm, and unsubscribe — including RFC 8058 one-click unsubscribe from a mail client."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import EmailField
from wtforms.validators import Length

from shop import catalog, clock, limits, notifications
from shop.errors import InvalidInput, InvalidState, LinkInvalid
from shop.extensions import csrf, db
from shop.forms import ButtonForm

bp = Blueprint("notify", __name__, url_prefix="/notify")


class NotifyForm(FlaskForm):
    email = EmailField("Your email", validators=[Length(max=254)])


@bp.get("/drops/<slug>")
def subscribe_form(slug: str):
    """A visitor's "Notify me": the address typed on the drop page, in a form of its own with
    its CSRF token (the drop page a crowd shares carries none). Signed in, it is one click on
    the drop page."""
    drop = catalog.public_drop(slug)
    if drop is None:
        abort(404)
    if current_user.is_authenticated:
        return redirect(url_for("storefront.drop", slug=slug, _anchor="notify"), 303)
    form = NotifyForm(formdata=None, email=request.args.get("email", "").strip()[:254])
    return render_template("notify/subscribe.html", drop=drop, form=form, message=None)


@bp.post("/drops/<slug>")
@limits.notify
def subscribe(slug: str):
    drop = catalog.public_drop(slug)
    if drop is None:
        abort(404)
    form = NotifyForm()
    if not form.validate_on_submit():
        flash("Please try again: the form expired.", "error")
        return redirect(url_for("storefront.drop", slug=slug), 303)
    try:
        if current_user.is_authenticated:
            notifications.subscribe_customer(drop, current_user, now=clock.now())
            message = f"Done — we'll email {current_user.email} when {drop.title} opens."
        else:
            if not (form.email.data or "").strip():
                raise InvalidInput("Give us the address to write to.")
            notifications.subscribe_visitor(drop, form.email.data, now=clock.now())
            message = (
                "Almost done: we sent you an email. Follow the link in it to confirm, and "
                f"we'll write when {drop.title} opens."
            )
    except (InvalidInput, InvalidState) as error:
        db.session.rollback()
        return render_template(
            "notify/subscribe.html", drop=drop, message=error.message, form=form
        ), error.status
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("storefront.drop", slug=slug, _anchor="notify"), 303)


@bp.get("/<token>/confirm")
def confirm(token: str):
    """The link in the confirmation email: a GET, idempotent, for this one subscription."""
    try:
        subscription = notifications.confirm(token, now=clock.now())
    except LinkInvalid as error:
        db.session.rollback()
        return render_template("notify/done.html", problem=error.message), error.status
    db.session.commit()
    return render_template("notify/done.html", confirmed=subscription)


@bp.route("/<token>/unsubscribe", methods=["GET", "POST"])
@csrf.exempt  # RFC 8058: the mail provider POSTs here with no form; the token is the secret
def unsubscribe(token: str):
    """GET asks (mail scanners follow links, so a GET changes nothing); POST unsubscribes —
    from our button or a mail client's one-click ``List-Unsubscribe=One-Click``."""
    try:
        subscription = notifications.subscription(token)
    except LinkInvalid as error:
        return render_template("notify/done.html", problem=error.message), error.status
    if request.method == "GET":
        return render_template(
            "notify/unsubscribe.html", subscription=subscription, form=ButtonForm()
        )
    notifications.unsubscribe(token, now=clock.now())
    db.session.commit()
    return render_template("notify/done.html", unsubscribed=subscription)

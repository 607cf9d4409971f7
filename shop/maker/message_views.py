"""The maker console: emails about the maker's orders — failed ones, and retrying them."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from shop import clock, outbox
from shop.auth import maker_required, safe_next
from shop.extensions import db
from shop.forms import ButtonForm
from shop.maker.views import bp


@bp.get("/messages", endpoint="failed_messages")
@maker_required
def failed_messages():
    return render_template(
        "maker/messages.html",
        messages=outbox.failed_for_maker(current_user),
        retry_form=ButtonForm(),
    )


@bp.post("/messages/<int:message_id>/retry", endpoint="retry_message")
@maker_required
def retry_message(message_id: int):
    message = outbox.message_for_maker(current_user, message_id)
    if message is None:
        abort(404)
    form = ButtonForm()
    if form.validate_on_submit() and outbox.retry(message, actor=current_user, now=clock.now()):
        db.session.commit()
        flash(f"Sending it again to {message.recipient} in a moment.", "success")
    else:
        db.session.rollback()
        flash("That message isn't waiting for a retry (it may be on its way already).", "info")
    return redirect(safe_next(request.form.get("next")) or url_for("maker.failed_messages"), 303)

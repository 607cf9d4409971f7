"""The waitlist of a sold-out batch, as a customer uses it: join, leave, and the offer page.

Routes on the storefront blueprint (``storefront.join_waitlist`` …): the line is part of the
drop page, where a refusal is shown next to the batch (``g.render_error``). An offer link is
its customer's alone: anyone else's, or one that does not exist, is a 404.
"""

from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from shop import catalog, clock, forms, orders, waitlist
from shop.errors import LoginRequired
from shop.extensions import db
from shop.models import Batch, Order
from shop.models.order import HELD
from shop.models.waitlist import OFFERED
from shop.storefront import views as storefront_views
from shop.storefront.views import bp


@bp.post("/waitlist/batches/<int:batch_id>/join")
def join_waitlist(batch_id: int):
    """Take a place in line for a sold-out batch (303 back to the batch on the drop page)."""
    drop = catalog.public_drop_of_batch(batch_id)
    if drop is None:
        abort(404)
    back = url_for("storefront.drop", slug=drop.slug) + f"#buy-{batch_id}"
    if not current_user.is_authenticated:
        flash(LoginRequired.message, "info")
        return redirect(url_for("account.login", next=back), 303)
    g.render_error = lambda error: _refused(batch_id, error)
    batch = db.get_or_404(Batch, batch_id)
    place = waitlist.join(
        batch, forms.parse_quantity(request.form), customer=current_user, now=clock.now()
    )
    db.session.commit()
    position = waitlist.standing(place).position
    flash(
        f"You're No. {position} in line for Batch No. {batch.number}. We'll email you.", "success"
    )
    return redirect(back, 303)


@bp.post("/waitlist/batches/<int:batch_id>/leave")
@login_required
def leave_waitlist(batch_id: int):
    """Leave the line; with an offer held, turn it down (its units move on to the next)."""
    place = waitlist.active_place(current_user, batch_id)
    if place is None:
        abort(404)
    back = _back_to(place.batch)
    now = clock.now()
    order = db.session.get(Order, place.order_id) if place.order_id else None
    if place.state == OFFERED and order is not None and order.state == HELD:
        g.render_error = lambda error: _offer_page(place.public_id, error)
        orders.cancel(order, now=now)  # expires its session first; commits
        place = db.session.get_one(type(place), place.id, populate_existing=True)
    waitlist.leave(place, now=now)
    db.session.commit()
    flash("You've left the waitlist.", "success")
    return redirect(back, 303)


@bp.get("/waitlist/offers/<public_id>")
@login_required
def waitlist_offer(public_id: str):
    """Where an offer's email leads: the customer's place, and the held units to pay for."""
    return _offer_page(public_id)


def _offer_page(public_id: str, error: Exception | None = None):
    db.session.rollback()
    place = waitlist.place_for(current_user, public_id)
    if place is None:
        abort(404)
    return render_template(
        "storefront/waitlist_offer.html",
        place=place,
        standing=waitlist.standing(place),
        batch=place.batch,
        order=db.session.get(Order, place.order_id) if place.order_id else None,
        now=clock.now(),
        error=error,
    )


def _refused(batch_id: int, error: Exception):
    db.session.rollback()
    drop = catalog.public_drop_of_batch(batch_id)
    if drop is None:
        abort(404)
    return storefront_views.drop_page(drop, error=error)


def _back_to(batch: Batch) -> str:
    if batch.drop is None:
        return url_for("account.orders")
    return url_for("storefront.drop", slug=batch.drop.slug) + f"#buy-{batch.id}"

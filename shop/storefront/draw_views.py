"""A draw, as customers see it: entering, and the public draw (page and JSON) anyone checks."""

from __future__ import annotations

import re

from flask import abort, current_app, flash, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from shop import auth, catalog, clock, draws, numbers
from shop.errors import EmailNotVerified, InvalidQuantity
from shop.extensions import db
from shop.storefront.views import bp, drop_page

_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _draw_drop(slug: str):
    found = catalog.public_drop(slug)
    if found is None or not found.is_draw:
        abort(404)
    return found


@bp.post("/drops/<slug>/batches/<int:batch_id>/enter")
@login_required
def enter_draw(slug: str, batch_id: int):
    """One entry in the draw for a batch; refusals re-render the drop page with the reason."""
    found = catalog.public_drop(slug)
    if found is None:
        abort(404)
    g.render_error = lambda error: drop_page(catalog.public_drop(slug), error=error)
    if current_app.config["SHOP_REQUIRE_VERIFIED_EMAIL"] and not auth.email_verified():
        raise EmailNotVerified(
            "Please confirm your email address before entering the draw: follow the link we "
            "sent you. No email? Send it again from your account page."
        )
    quantity = numbers.parse_whole(request.form.get("quantity"), low=1, high=9999)
    if quantity is None:
        raise InvalidQuantity("Choose a quantity: a whole number from 1.")
    entry = draws.enter(found, batch_id, quantity, customer=current_user, now=clock.now())
    db.session.commit()
    flash(
        f"You're in the draw. Your entry is {entry.public_id}: after the draw, find it in the "
        "published list.",
        "success",
    )
    return redirect(url_for("storefront.drop", slug=slug) + f"#draw-{batch_id}", 303)


@bp.get("/drops/<slug>/draw")
def draw(slug: str):
    """The draw: its commitment, how it works, and after it the seed and every entry."""
    found = _draw_drop(slug)
    asked = request.args.get("entry", "").strip()
    looked_up = None
    if asked:
        looked_up = draws.look_up(found, asked) if _ENTRY_ID.fullmatch(asked) else None
    mine = draws.entries_of(current_user, found) if current_user.is_authenticated else {}
    return render_template(
        "storefront/draw.html",
        drop=found,
        draw=draws.published(found),
        rows=draws.public_rows(found),
        mine=mine,
        asked=asked,
        looked_up=looked_up,
        pay_hours=draws.pay_hours(),
        now=clock.now(),
    )


@bp.get("/drops/<slug>/draw.json")
def draw_json(slug: str):
    """The draw as data, for ``python -m shop.verify_draw`` and anyone's own check."""
    response = jsonify(draws.published(_draw_drop(slug)))
    response.headers["Cache-Control"] = "public, max-age=30"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response

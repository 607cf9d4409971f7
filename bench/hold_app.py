"""BENCH ONLY — the shop plus one route that takes a hold exactly like ``checkout.buy`` and
stops there: no Stripe Checkout Session, so the benchmark can separate our hold path from the
emulator's cost on the same cores. Never deployed: ``gunicorn bench.hold_app:app``.

The route does what the buy view does before it asks Stripe: load the batch and its drop,
require a logged-in customer (session cookie → user row), check CSRF (global), parse the
quantity, ``inventory.hold``, commit once, 303.
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, request
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from shop import clock, create_app, inventory
from shop.catalog import MAX_ID
from shop.checkout.views import parse_quantity
from shop.extensions import db
from shop.models import Batch
from shop.models.drop import DRAFT

bench = Blueprint("bench", __name__, url_prefix="/bench")


@bench.post("/hold/<int:batch_id>")
def hold(batch_id: int):
    batch = db.session.get(Batch, batch_id) if batch_id <= MAX_ID else None
    if batch is None or batch.drop is None or batch.drop.state == DRAFT:
        abort(404)
    if not current_user.is_authenticated:
        abort(401)
    quantity = parse_quantity(request.form, limit=batch.per_customer_limit)
    order = inventory.hold(batch.id, quantity, customer=current_user, now=clock.now())
    db.session.commit()
    return redirect(f"/bench/held/{order.public_id}", 303)


@bench.post("/hold-lean/<int:batch_id>")
def hold_lean(batch_id: int):
    """The same hold with two fewer queries: the batch and its drop in one query, and the
    order's public id read before the commit expires it (no reload in a new transaction).
    A what-if for the buy view, measured by the benchmark's ``lean`` phase."""
    batch = (
        db.session.scalars(
            select(Batch).where(Batch.id == batch_id).options(joinedload(Batch.drop))
        ).first()
        if batch_id <= MAX_ID
        else None
    )
    if batch is None or batch.drop is None or batch.drop.state == DRAFT:
        abort(404)
    if not current_user.is_authenticated:
        abort(401)
    quantity = parse_quantity(request.form, limit=batch.per_customer_limit)
    order = inventory.hold(batch.id, quantity, customer=current_user, now=clock.now())
    public_id = order.public_id
    db.session.commit()
    return redirect(f"/bench/held/{public_id}", 303)


app = create_app()
app.register_blueprint(bench)

"""From a hold to Stripe Checkout and back: buy, continue to payment, success and cancel.

Errors from buying (limit, not live, bad quantity, Stripe trouble, fewer left than asked for)
re-render the drop page with the message, through ``g.render_error``; a batch with nothing left
gets a small sold-out page instead. JSON callers get the central JSON error.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from shop import (
    auth,
    catalog,
    claims,
    clock,
    database,
    fast_path,
    forms,
    inventory,
    limits,
    metrics,
    orders,
    page_cache,
    refusal_counts,
    shipping_rates,
    waiting_room,
)
from shop.errors import (
    DestinationNeeded,
    EmailNotVerified,
    InvalidQuantity,
    LoginRequired,
    NotFound,
    PaymentRejected,
    PaymentUnavailable,
    SoldOut,
    error_response,
    wants_json,
)
from shop.extensions import db
from shop.models import Drop, Order
from shop.queue import views as queue_views
from shop.storefront import views as storefront_views

bp = Blueprint("checkout", __name__, url_prefix="/checkout")


@bp.post("/batches/<int:batch_id>")
@metrics.counts_refused_holds
@refusal_counts.counts_refusals
@limits.buy
def buy(batch_id: int):
    """Hold the units, then on to payment (303 to ``pay``).

    The request a flash crowd sends, so it is one statement: the hold reads the batch's terms and
    checks the buyer's session token itself (``inventory.reserve``). Stripe is asked by ``pay``,
    the next request: the units are safe before any network call, and a slow Stripe never slows
    the hold. Refusals re-render the drop page with the reason (``_refused``).
    """
    buyer = auth.buyer()
    if buyer is None:
        return _login_first(_buy_anchor(_released_drop(batch_id), batch_id))
    room, gone, mirrored = waiting_room.before_buy(batch_id, buyer.id)  # one round trip
    skipped = queue_views.buy_gate(room, buyer.id)
    if skipped is not None:
        return skipped
    g.render_error = lambda error: _refused(batch_id, error)
    if current_app.config["SHOP_REQUIRE_VERIFIED_EMAIL"] and not auth.email_verified():
        raise EmailNotVerified()
    now = clock.now()
    quantity, birth_date = forms.buy_terms(request.form, now.date())
    ship_country = request.form.get("ship_country", "").strip()
    if gone is not None:  # the crowd after the last unit: answered without the hold statement
        in_line = claims.in_line(batch_id, buyer, mirrored)  # the session, checked as a hold would
        if in_line is None:
            raise LoginRequired()  # the session was ended elsewhere
        facts = gone.seen_by(in_line=in_line)
        g.render_error = lambda _error: _sold_out_page(batch_id, facts)
        raise SoldOut()
    with database.committed():  # the hold is one statement: it commits itself
        reservation = inventory.reserve(
            batch_id,
            quantity,
            customer=buyer,
            now=now,
            birth_date=birth_date,
            ship_country=shipping_rates.parse_country(ship_country) if ship_country else None,
            network=limits.hold_network(),
        )
    metrics.hold_taken()
    return redirect(url_for("checkout.pay", public_id=reservation.public_id), 303)


@bp.route("/orders/<public_id>/pay", methods=["GET", "POST"])
@database.writes
@limits.pay
def pay(public_id: str):
    """To Stripe Checkout for a held order: the same session again, or a fresh one (303).

    GET is where ``buy`` sends the customer; POST is the button in My orders. Both only ever
    reach the customer's own held order, and Stripe's idempotency key makes a repeat harmless.
    """
    if not current_user.is_authenticated:
        return _login_first(url_for("account.order", public_id=public_id))
    order = _own_order(public_id, details=False)
    g.render_error = lambda error: _order_page(order.id, error)
    try:
        return redirect(orders.continue_checkout(order, now=clock.now()), 303)
    except DestinationNeeded as needed:
        return _destination_page(order, needed.countries)


@bp.post("/orders/<public_id>/destination")
@database.writes
@limits.pay
def destination(public_id: str):
    """Where a held order ships, asked before Checkout when shipping is priced by country."""
    if not current_user.is_authenticated:
        return _login_first(url_for("account.order", public_id=public_id))
    order = _own_order(public_id, details=False)
    countries = current_app.config.get("SHOP_SHIPPING_COUNTRIES") or []
    g.render_error = lambda error: _destination_page(
        _order_after_failure(order.id),
        shipping_rates.destinations(order.batch, countries),
        error=error,
    )
    country = shipping_rates.parse_country(request.form.get("ship_country", ""))
    orders.choose_destination(order, country, now=clock.now())
    db.session.commit()
    return redirect(url_for("checkout.pay", public_id=order.public_id), 303)


def _destination_page(order: Order, countries: list[str], *, error: Exception | None = None):
    return render_template(
        "checkout/destination.html",
        order=order,
        batch=order.batch,
        countries=countries,
        error=error,
        now=clock.now(),
    )


@bp.get("/success")
@database.writes
@limits.checkout_return
def success():
    """Where Stripe sends the customer back: show the numbers, fulfilling first (idempotent)
    when the database does not know the outcome yet.

    A paid or refunded order is answered from the database, however often the page is loaded.
    Otherwise Stripe is asked at most once per ``limits.RETURN_STRIPE_CHECK`` for the session,
    across every process; a reload inside that window shows what the database knows, and the
    webhook finishes the job meanwhile.
    """
    session_id = request.args.get("session_id", "")
    if not current_user.is_authenticated:
        return _login_first(request.full_path)
    order = catalog.customer_order_for_session(current_user, session_id)
    if order is None:
        abort(404)
    if not orders.settled(order) and limits.stripe_check_due(session_id):
        order_id = order.id
        try:
            orders.fulfil(session_id, now=clock.now())
        except (PaymentUnavailable, PaymentRejected):
            db.session.rollback()  # show what we know; the webhook finishes the job
        order = catalog.order_for_return_page(order_id)
    return render_template("checkout/success.html", order=order, batch=order.batch)


@bp.route("/orders/<public_id>/cancel", methods=["GET", "POST"])
def cancel(public_id: str):
    """Stripe's back button lands here: confirm, then expire the session and release."""
    if not current_user.is_authenticated:
        return _login_first(request.path)
    if request.method == "GET":
        order = _own_order(public_id)
        return render_template("checkout/cancel.html", order=order, batch=order.batch)
    # Everything the answer needs is read before the release: after its rollback and commit
    # each object read again would be read with everything around it.
    order = _own_order(public_id, details=False)
    order_id, drop = order.id, order.batch.drop
    back = url_for("storefront.drop", slug=drop.slug) if drop else url_for("account.orders")
    g.render_error = lambda error: _cancel_page(order_id, error)
    outcome = orders.cancel(order, now=clock.now())
    if outcome in (orders.RELEASED, orders.IGNORED):
        flash("Your hold is released and nothing was charged.", "success")
        return redirect(back, 303)
    order = db.session.get_one(Order, order_id, populate_existing=True)
    return redirect(url_for("checkout.success", session_id=order.checkout_session_id), 303)


def _refused(batch_id: int, error: Exception):
    """A refused buy: the drop page again, the reason next to the batch (404 for no batch).

    A batch with nothing left to take gets the small sold-out page instead: most of a flash
    crowd gets that answer once the last unit is gone, so it reads one row and does not render
    the drop. Asking for more than is left keeps the drop page, to choose fewer."""
    db.session.rollback()  # whatever the failed attempt touched
    if isinstance(error, SoldOut) and error.remaining <= 0:
        return _sold_out_page(batch_id)
    drop = catalog.public_drop_of_batch(batch_id)
    if drop is None:  # never released, or gone: as if it never existed
        return error_response(404, NotFound.code, NotFound.message)
    if isinstance(error, LoginRequired):  # the session was ended elsewhere
        return _login_first(_buy_anchor(drop, batch_id))
    if isinstance(error, InvalidQuantity):  # now that the batch is at hand, say its limit
        limit = next(b.per_customer_limit for b in drop.batches if b.id == batch_id)
        error = InvalidQuantity(inventory.quantity_message(limit))
    return storefront_views.drop_page(drop, error=error)


def _sold_out_page(batch_id: int, facts: catalog.SoldOutFacts | None = None):
    """409: the batch is sold out, and what happens next — the batch lined up behind it, the
    waitlist while units are only held, or nothing more once every unit is paid for.

    The answer most of a crowd gets once the last unit is gone, so it reads one row and renders
    nothing new: the page is kept in this process per set of facts (they are all it says of the
    batch and of the customer), rendered as nobody, and gets the visitor's nav, flashes and
    CSRF token put in. After a refusal by the hold statement (which checked the session) the
    facts are read here and shared (``page_cache.keep_nothing_left``); ``buy`` passes them in
    when it answered from shared ones, having checked the session itself."""
    if facts is None:
        buyer = auth.buyer()
        facts = catalog.sold_out_facts(batch_id, buyer.id if buyer is not None else None)
        if facts is None:  # never released, or gone: as if it never existed
            return error_response(404, NotFound.code, NotFound.message)
        page_cache.keep_nothing_left(facts)
    fast_path.keep_refusal()
    shell = page_cache.sold_out_shell(facts)
    return page_cache.filled_for_visitor(shell, clock.now()), SoldOut.status


def _order_page(order_id: int, error: Exception) -> str:
    """The customer's order page with why payment could not start (the hold is kept)."""
    return render_template("account/order.html", order=_order_after_failure(order_id), error=error)


def _cancel_page(order_id: int, error: Exception) -> str:
    order = _order_after_failure(order_id)
    return render_template("checkout/cancel.html", order=order, batch=order.batch, error=error)


def _order_after_failure(order_id: int) -> Order:
    """The order as the database has it now that an attempt on it failed (rolled back)."""
    db.session.rollback()
    return db.session.get_one(Order, order_id, populate_existing=True)


def _buy_anchor(drop: Drop, batch_id: int) -> str:
    return url_for("storefront.drop", slug=drop.slug) + f"#buy-{batch_id}"


def _released_drop(batch_id: int) -> Drop:
    drop = catalog.public_drop_of_batch(batch_id)
    if drop is None:
        abort(404)
    return drop


def _own_order(public_id: str, *, details: bool = True) -> Order:
    """The signed-in customer's own order; anyone else's (or none) is a 404."""
    order = catalog.customer_order(current_user, public_id, details=details)
    if order is None:
        abort(404)
    return order


def _login_first(next_path: str):
    if wants_json():
        return error_response(401, LoginRequired.code, LoginRequired.message)
    flash(LoginRequired.message, "info")
    return redirect(url_for("account.login", next=next_path), 303)

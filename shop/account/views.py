"""Register, log in, log out, and the customer's own account pages."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from shop import catalog, limits, users
from shop.account.forms import LoginForm, LogoutForm, PasswordForm, RegisterForm
from shop.auth import safe_next
from shop.errors import InvalidInput
from shop.extensions import db
from shop.models.order import HELD, PAID

bp = Blueprint("account", __name__, url_prefix="/account")


def _landing(user, requested: str | None) -> str:
    default = url_for("maker.dashboard") if user.is_maker else url_for("storefront.home")
    return safe_next(requested) or default


def _start_session(user, *, remember: bool) -> None:
    session.clear()  # a fresh session at login: no fixation, a new CSRF token
    login_user(user, remember=remember)


@bp.route("/register", methods=["GET", "POST"])
@limits.register
def register():
    form = RegisterForm(next=request.args.get("next", ""))
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("account/register.html", form=form), status
    try:
        user = users.register(
            form.email.data, form.password.data, display_name=form.display_name.data
        )
    except InvalidInput as error:
        form.email.errors = [*form.email.errors, error.message]
        db.session.rollback()
        return render_template("account/register.html", form=form), 422
    db.session.commit()
    _start_session(user, remember=False)
    flash("Welcome to Small Batch — your account is ready.", "success")
    return redirect(_landing(user, form.next.data), 303)


@bp.route("/login", methods=["GET", "POST"])
@limits.login
def login():
    form = LoginForm(next=request.args.get("next", ""))
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("account/login.html", form=form), status
    try:
        user = users.authenticate(form.email.data, form.password.data)
    except users.LookAlikeEmail as error:
        form.email.errors = [*form.email.errors, error.message]
        return render_template("account/login.html", form=form), 422
    if user is None:
        form.password.errors = ["Wrong email or password."]
        return render_template("account/login.html", form=form), 401
    db.session.commit()  # a rehashed password, if the parameters grew
    _start_session(user, remember=form.remember.data)
    return redirect(_landing(user, form.next.data), 303)


@bp.post("/logout")
def logout():
    form = LogoutForm()
    if form.validate_on_submit() and current_user.is_authenticated:
        users.revoke_sessions(current_user)
        db.session.commit()
    logout_user()
    session.clear()
    flash("You're logged out.", "info")
    return redirect(url_for("storefront.home"), 303)


@bp.get("/")
@login_required
def overview():
    orders = catalog.customer_orders(current_user)
    return render_template(
        "account/overview.html",
        awaiting=[o for o in orders if o.state == HELD],
        units=[unit for o in orders if o.state == PAID for unit in o.units],
        recent=orders[:3],
        order_count=len(orders),
    )


@bp.get("/orders")
@login_required
def orders():
    return render_template("account/orders.html", orders=catalog.customer_orders(current_user))


@bp.get("/orders/<public_id>")
@login_required
def order(public_id: str):
    found = catalog.customer_order(current_user, public_id)
    if found is None:
        abort(404)  # someone else's order looks exactly like one that does not exist
    return render_template("account/order.html", order=found)


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password():
    form = PasswordForm()
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("account/password.html", form=form), status
    user = current_user._get_current_object()
    try:
        users.change_password(user, form.current_password.data, form.new_password.data)
    except InvalidInput as error:
        db.session.rollback()
        wrong = form.current_password if "current" in error.message else form.new_password
        wrong.errors = [*wrong.errors, error.message]
        return render_template("account/password.html", form=form), 422
    db.session.commit()
    # Every other session just ended; this one carries on with the new session token.
    remember_cookie = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
    _start_session(user, remember=remember_cookie in request.cookies)
    flash("Password changed. You've been logged out everywhere else.", "success")
    return redirect(url_for("account.overview"), 303)

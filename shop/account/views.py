"""Register, log in, log out, and the customer's own account pages."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from shop import accounts, limits
from shop.account.forms import LoginForm, LogoutForm, RegisterForm
from shop.auth import safe_next
from shop.errors import InvalidInput
from shop.extensions import db

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
        user = accounts.register(
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
    user = accounts.authenticate(form.email.data, form.password.data)
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
        accounts.revoke_sessions(current_user)
        db.session.commit()
    logout_user()
    session.clear()
    flash("You're logged out.", "info")
    return redirect(url_for("storefront.home"), 303)


@bp.get("/")
@login_required
def overview():
    return render_template("account/overview.html")

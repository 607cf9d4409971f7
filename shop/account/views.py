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

from shop import auth, catalog, claims, clock, limits, operators, recovery, users, verification
from shop.account.forms import (
    AcceptInvitationForm,
    ForgotPasswordForm,
    LoginForm,
    PasswordForm,
    RegisterForm,
    ResetPasswordForm,
)
from shop.auth import safe_next
from shop.errors import InvalidInput, InvalidState, LinkInvalid, TooSoon
from shop.extensions import db
from shop.forms import ButtonForm, invalid_status
from shop.models.order import HELD, PAID

bp = Blueprint("account", __name__, url_prefix="/account")


def _landing(user, requested: str | None) -> str:
    default = url_for("maker.dashboard") if user.is_maker else url_for("storefront.home")
    return safe_next(requested) or default


def _start_session(user, *, remember: bool) -> None:
    session.clear()  # a fresh session at login: no fixation, a new CSRF token
    login_user(user, remember=remember)
    claims.refresh([user.id])  # a crowd's first refusal of this session reads it from Redis
    auth.remember_verified(user)
    auth.remember_links(user)


@bp.route("/register", methods=["GET", "POST"])
@limits.register
def register():
    form = RegisterForm(next=request.args.get("next", ""))
    if not form.validate_on_submit():
        return render_template("account/register.html", form=form), invalid_status(form)
    try:
        user = users.register(
            form.email.data, form.password.data, display_name=form.display_name.data
        )
    except InvalidInput as error:
        form.email.errors = [*form.email.errors, error.message]
        db.session.rollback()
        return render_template("account/register.html", form=form), 422
    verification.send_link(user, now=clock.now())
    db.session.commit()
    _start_session(user, remember=False)
    flash(
        f"Welcome to Small Batch — your account is ready. We sent a link to {user.email} "
        "to confirm your address.",
        "success",
    )
    return redirect(_landing(user, form.next.data), 303)


@bp.route("/login", methods=["GET", "POST"])
@limits.login
def login():
    form = LoginForm(next=request.args.get("next", ""))
    if not form.validate_on_submit():
        return render_template("account/login.html", form=form), invalid_status(form)
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
    form = ButtonForm()
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
        resend_form=ButtonForm(),
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
@limits.change_password
def password():
    form = PasswordForm()
    if not form.validate_on_submit():
        return render_template("account/password.html", form=form), invalid_status(form)
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


# --- email verification and password reset ------------------------------------------------


@bp.get("/verify/<token>")
def verify_email(token: str):
    """The link in "Confirm your email". A GET, as every emailed link is: it only marks the
    address the signed link names as confirmed, and following it twice changes nothing."""
    try:
        user = verification.verify(token, now=clock.now())
    except LinkInvalid as error:
        db.session.rollback()
        return _link_problem(error, ask_again=url_for("account.overview")), error.status
    db.session.commit()
    if current_user.is_authenticated and current_user.id == user.id:
        auth.remember_verified(user)
        flash("Thank you — your email address is confirmed.", "success")
        return redirect(url_for("account.overview"), 303)
    flash("Thank you — your email address is confirmed. Log in to carry on.", "success")
    return redirect(url_for("account.login"), 303)


@bp.post("/verify/resend")
@login_required
@limits.resend_verification
def resend_verification():
    form = ButtonForm()
    if form.validate_on_submit():
        try:
            verification.resend(current_user._get_current_object(), now=clock.now())
        except (TooSoon, InvalidState) as error:
            db.session.rollback()
            flash(error.message, "info")
        else:
            db.session.commit()
            flash(f"We sent a new link to {current_user.email}.", "success")
    return redirect(url_for("account.overview"), 303)


@bp.route("/forgot-password", methods=["GET", "POST"])
@limits.password_reset
def forgot_password():
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        return render_template("account/forgot_password.html", form=form), invalid_status(form)
    try:
        recovery.request_link(form.email.data, now=clock.now())
    except InvalidInput as error:
        db.session.rollback()
        form.email.errors = [*form.email.errors, error.message]
        return render_template("account/forgot_password.html", form=form), 422
    db.session.commit()
    # The same answer whether or not an account has this address.
    return render_template("account/forgot_password_sent.html", email=form.email.data.strip())


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
@limits.set_password
def reset_password(token: str):
    form = ResetPasswordForm()
    try:
        recovery.account_for(token, now=clock.now())
    except LinkInvalid as error:
        db.session.rollback()
        return _link_problem(error, ask_again=url_for("account.forgot_password")), error.status
    if not form.validate_on_submit():
        return render_template("account/reset_password.html", form=form), invalid_status(form)
    try:
        user = recovery.reset(token, form.new_password.data, now=clock.now())
    except LinkInvalid as error:
        db.session.rollback()
        return _link_problem(error, ask_again=url_for("account.forgot_password")), error.status
    except InvalidInput as error:
        db.session.rollback()
        form.new_password.errors = [*form.new_password.errors, error.message]
        return render_template("account/reset_password.html", form=form), 422
    db.session.commit()
    _start_session(user, remember=False)
    flash("Your new password is set. You've been logged out everywhere else.", "success")
    return redirect(_landing(user, None), 303)


@bp.route("/invitation/<token>", methods=["GET", "POST"])
@limits.register
def accept_invitation(token: str):
    """A maker's invitation link: choose a name and a password, and the console is theirs."""
    try:
        invitation = operators.invitation_for(token, now=clock.now())
    except LinkInvalid as error:
        db.session.rollback()
        return _link_problem(error, ask_again=None), error.status
    form = AcceptInvitationForm()
    if request.method == "GET":
        form.display_name.data = invitation.display_name
    if not form.validate_on_submit():
        return render_template(
            "account/accept_invitation.html", form=form, invitation=invitation
        ), invalid_status(form)
    try:
        user = operators.accept(
            token,
            password=form.new_password.data,
            display_name=form.display_name.data,
            now=clock.now(),
        )
    except LinkInvalid as error:
        db.session.rollback()
        return _link_problem(error, ask_again=None), error.status
    except InvalidInput as error:
        db.session.rollback()
        form.new_password.errors = [*form.new_password.errors, error.message]
        return render_template(
            "account/accept_invitation.html", form=form, invitation=invitation
        ), 422
    db.session.commit()
    _start_session(user, remember=False)
    flash("Welcome to Small Batch. Start with a product, then a drop.", "success")
    return redirect(url_for("maker.dashboard"), 303)


def _link_problem(error: LinkInvalid, *, ask_again: str | None) -> str:
    return render_template("account/link_problem.html", message=error.message, ask_again=ask_again)

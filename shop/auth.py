"""Who is asking: login loading, per-role guards and safe redirects."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import wraps
from urllib.parse import unquote, urlsplit

from flask import abort, g, redirect, request, session, url_for
from flask_login import LoginManager, current_user
from sqlalchemy import Select, bindparam, select

from shop import catalog, database, waitlist
from shop.catalog import MAX_ID
from shop.errors import AccountSuspended, LoginRequired, error_response, wants_json
from shop.extensions import db
from shop.models import User
from shop.models.user import MAKER


@dataclass(frozen=True)
class SessionClaim:
    """Who a signed session cookie says is logged in: an account id and the session token it
    was issued with. Not yet checked against the account (the token may have been rotated)."""

    id: int
    session_token: str

    def params(self) -> dict[str, object]:
        """The claim bound to a statement of ``_claimed``."""
        return {"id": self.id, "token": self.session_token}


def parse_claim(session_id: str | None) -> SessionClaim | None:
    """The ``id:token`` Flask-Login keeps in the session (``User.get_id``), or None."""
    user_id, _, token = (session_id or "").partition(":")
    if not user_id.isdigit() or not token or int(user_id) > MAX_ID:
        return None
    return SessionClaim(int(user_id), token)


def buyer():
    """Who is buying, without loading their row: the session's claim, which the hold statement
    verifies itself (``inventory.reserve``), so a flash crowd's buy costs no user query. Falls
    back to Flask-Login (a remember-me cookie restoring an expired session); None if nobody."""
    claim = parse_claim(session.get("_user_id"))
    if claim is not None:
        return claim
    return current_user if current_user.is_authenticated else None


# The user row for a session, built once: ``session.get`` builds its query on every call, and
# this runs on every request (half the CPU).
def _claimed(*columns) -> Select:
    """``columns`` of the account a session claims, if its token is still the account's (bound
    by ``SessionClaim.params``): a rotated token finds nobody."""
    return select(*columns).where(
        User.id == bindparam("id"), User.session_token == bindparam("token")
    )


_USER_FOR_SESSION = _claimed(User)


_LOAD_WITH: dict[Hashable, Select] = {}  # built once per kind of columns


def load_with(kind: Hashable, columns: Callable[[], list], params: dict) -> tuple | None:
    """The account the session claims, read together with ``columns()`` (correlated to
    ``User``, bound by ``params``) in ONE statement, built once per ``kind``, and made this
    request's ``current_user``, so Flask-Login asks nothing more: a page a crowd reloads then
    reads the account and the visitor's own rows in a single round trip. The row's values of
    the columns; None when the session claims nobody, the claim is stale (the token was
    rotated: the loader then finds nobody either) or the account is loaded already."""
    claim = parse_claim(session.get("_user_id"))
    if claim is None or "_login_user" in g:
        return None
    statement = _LOAD_WITH.get(kind)
    if statement is None:
        statement = _LOAD_WITH.setdefault(
            kind,
            _claimed(User, *columns()),
        )
    row = db.session.execute(statement, claim.params() | params).first()
    if row is None:
        return None
    g._login_user = row[0]  # Flask-Login's user for this request (flask_login.utils._get_user)
    return tuple(row[1:])


_LINKS_WITH: dict[int, Select] = {}  # built once per number of batches


def links_and_taken(
    claim: SessionClaim, batch_ids: list[int]
) -> tuple[NavAccount, tuple, bool] | None:
    """What a drop page of a visitor who holds nothing depends on: the account's links (is it
    a maker's, an admin's), the values of ``catalog.taken_columns`` for ``batch_ids`` and
    whether the account has a place in any of their lines — read as ``load_with`` reads the
    account, in one statement that also checks the session's token, but as plain columns, for
    a page answered before Flask (``shop.fast_path``). None for a stale or unknown claim."""
    statement = _LINKS_WITH.get(len(batch_ids))
    if statement is None:
        count = len(batch_ids)
        statement = _LINKS_WITH.setdefault(
            count,
            _claimed(
                User.role,
                User.is_admin,
                *catalog.taken_columns(count),
                waitlist.in_line_column(count),
            ),
        )
    row = database.read_row(statement, claim.params() | catalog.taken_params(batch_ids))
    if row is None:
        return None
    return NavAccount(row[0] == MAKER, bool(row[1])), tuple(row[2:-1]), bool(row[-1])


def configure_login(login_manager: LoginManager) -> None:
    login_manager.login_view = "account.login"
    login_manager.login_message = LoginRequired.message
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(session_id: str):
        claim = parse_claim(session_id)
        if claim is None:
            return None
        # A rotated token (logout elsewhere, password change) ends every older session.
        return db.session.scalar(_USER_FOR_SESSION, claim.params())

    @login_manager.unauthorized_handler
    def unauthorized():
        if wants_json():
            return error_response(401, LoginRequired.code, LoginRequired.message)
        return _to_login()


def _to_login():
    """To the login page, and back to this page after."""
    return redirect(url_for("account.login", next=request.full_path.rstrip("?")))


def _signed_in_as(allowed: Callable[[User], bool], *, refused: int):
    """A view guard: visitors log in first; a user whom ``allowed`` refuses gets ``refused``."""

    def guard(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            if not current_user.is_authenticated:
                return _to_login()
            if not allowed(current_user):
                abort(refused)
            return view(*args, **kwargs)

        return guarded

    return guard


def maker_required(view):
    """Makers only: anonymous visitors are sent to log in, customers get 403, and a suspended
    maker the "account suspended" page."""

    @_signed_in_as(lambda user: user.is_maker, refused=403)
    @wraps(view)
    def in_good_standing(*args, **kwargs):
        if current_user.is_suspended:
            raise AccountSuspended()
        return view(*args, **kwargs)

    return in_good_standing


def operator_required(view):
    """The shop's operator only (``is_admin``): anonymous visitors log in, anyone else a 404, so
    the console's existence is not advertised."""
    return _signed_in_as(lambda user: user.is_admin, refused=404)(view)


# As sent: printable ASCII only (no spaces, controls, backslashes or Unicode slash lookalikes).
# Once decoded, an encoded space is harmless; the rest is not.
_UNSAFE_RAW = re.compile(r"[^\x21-\x7e]|\\")
_UNSAFE_DECODED = re.compile(r"[^\x20-\x7e]|\\")
_MAX_DECODES = 4


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a same-site relative path, else None.

    Rejects schemes, ``//host``, backslashes, control characters, non-ASCII lookalikes, and the
    same hidden behind any depth of percent-encoding, so ``next=`` never leaves the site.
    """
    if not target or len(target) > 2000:
        return None
    if _UNSAFE_RAW.search(target):
        return None
    decoded = target
    for _ in range(_MAX_DECODES):
        if _UNSAFE_DECODED.search(decoded):
            return None
        parts = urlsplit(decoded)
        if parts.scheme or parts.netloc or not decoded.startswith("/") or decoded.startswith("//"):
            return None
        unquoted = unquote(decoded)
        if unquoted == decoded:
            return target
        decoded = unquoted
    return None  # still encoded after several rounds: nobody links like that


# Whether the signed-in account's address is confirmed, kept in the signed session once true
# (an address never becomes unconfirmed), so a confirmed buyer's buy costs no user query.
VERIFIED = "email_verified"


def remember_verified(user) -> None:
    if user.email_verified_at is not None:
        session[VERIFIED] = True


def email_verified() -> bool:
    """True when the signed-in account's address is confirmed (the session, else the row)."""
    if session.get(VERIFIED):
        return True
    if not current_user.is_authenticated or current_user.email_verified_at is None:
        return False
    session[VERIFIED] = True
    return True


# Which of the nav's account links ("Maker console", "Operator") the signed-in account has,
# kept in the signed session at login, so a page a crowd reloads (the queue page) draws its nav
# without reading the account. Only links: every page behind them checks the account itself.
LINKS = "account_links"


@dataclass(frozen=True)
class NavAccount:
    """Stands in for ``current_user`` in the nav (``_account_nav.html``): a signed-in account
    and its links."""

    is_maker: bool
    is_admin: bool
    is_authenticated: bool = True


def remember_links(user) -> None:
    session[LINKS] = [bool(user.is_maker), bool(user.is_admin)]


def nav_account() -> NavAccount | None:
    """The signed-in visitor as the nav shows them: from the session (from the account's row
    only for a session begun before this was kept); None when nobody is signed in."""
    found = links_kept(session) if parse_claim(session.get("_user_id")) is not None else None
    if found is None:
        if not current_user.is_authenticated:
            return None
        remember_links(current_user)
        found = links_kept(session)
    return found


def links_kept(data: Mapping) -> NavAccount | None:
    """The account links a session's ``data`` keeps (``remember_links``), if it keeps them —
    the request's session, or one read outside a request (``shop.fast_path``)."""
    links = data.get(LINKS)
    if not isinstance(links, list) or len(links) != 2:
        return None
    return NavAccount(bool(links[0]), bool(links[1]))

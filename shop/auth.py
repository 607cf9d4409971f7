"""Who is asking: login loading, per-role guards and safe redirects."""

from __future__ import annotations

import re
from functools import wraps
from urllib.parse import unquote, urlsplit

from flask import abort, redirect, request, url_for
from flask_login import LoginManager, current_user

from shop.extensions import db


def configure_login(login_manager: LoginManager) -> None:
    login_manager.login_view = "account.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(session_id: str):
        from shop.models import User

        user_id, _, token = session_id.partition(":")
        if not user_id.isdigit() or not token:
            return None
        user = db.session.get(User, int(user_id))
        # A rotated token (logout elsewhere, password change) ends every older session.
        if user is None or user.session_token != token:
            return None
        return user

    @login_manager.unauthorized_handler
    def unauthorized():
        from shop.errors import error_response, wants_json

        if wants_json():
            return error_response(401, "login_required", "Please log in to continue.")
        return redirect(url_for("account.login", next=request.full_path.rstrip("?")))


def maker_required(view):
    """Makers only: anonymous visitors are sent to log in, customers get 403."""

    @wraps(view)
    def guarded(*args, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("account.login", next=request.full_path.rstrip("?")))
        if not current_user.is_maker:
            abort(403)
        return view(*args, **kwargs)

    return guarded


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

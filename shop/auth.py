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


_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a same-site relative path, else None.

    Rejects schemes, ``//host``, backslashes, control characters and the same hidden behind
    percent-encoding, so ``next=`` can never send someone to another site.
    """
    if not target or len(target) > 2000:
        return None
    decoded = target
    for _ in range(3):  # catch double and triple encodings too
        if _UNSAFE_CHARS.search(decoded):
            return None
        parts = urlsplit(decoded)
        if parts.scheme or parts.netloc or not decoded.startswith("/") or decoded.startswith("//"):
            return None
        decoded = unquote(decoded)
    return target

"""The maker console in tests: browsers that don't share ``g``, logins, CSRF tokens, images."""

from __future__ import annotations

import contextvars
import io
import re

from flask import Flask
from flask.globals import _cv_app
from flask.testing import FlaskClient
from PIL import Image

from shop.extensions import db
from shop.models import User

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Browser(FlaskClient):
    """Each request in an app context of its own, as on a real server, so one client's login
    (cached by Flask-Login in ``g``) never leaks into another's request. The test's own session
    is committed first: the request must see what the test arranged."""

    csrf: str = ""

    def open(self, *args, **kwargs):
        db.session.commit()
        response = contextvars.copy_context().run(self._alone, args, kwargs)
        db.session.expire_all()  # the test reads what the request wrote
        return response

    def _alone(self, args, kwargs):
        _cv_app.set(None)  # type: ignore[arg-type]
        return super().open(*args, **kwargs)

    def form(self, path: str, data: dict | None = None, **kwargs):
        """POST a form with this browser's CSRF token."""
        return self.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)


def browser(app: Flask, user: User | None = None) -> Browser:
    """A fresh browser, logged in as ``user`` when given, with a CSRF token ready."""
    client = Browser(app, app.response_class, use_cookies=True)
    if user is not None:
        with client.session_transaction() as session:
            session["_user_id"] = user.get_id()
            session["_fresh"] = True
    page = client.get("/account/login" if user is None else "/account/")
    client.csrf = csrf_token_in(page.get_data(as_text=True))
    return client


def csrf_token_in(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), **save) -> bytes:
    image = Image.new("RGB", size, (180, 120, 60))
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()

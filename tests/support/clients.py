"""The one test client: every request runs in its own app context, as on a real server.

The ``app`` fixture keeps one app context pushed for the whole test, and Flask reuses a pushed
context for test-client requests, so ``g`` (Flask-Login's cached user, Flask-WTF's CSRF token,
``g.render_error``) and the database session would otherwise leak from one request, or one
client, to the next: a brand-new client would be "logged in". The test's own transaction is
committed before each request (the request must see what the test arranged, and on SQLite an
open write would block it) and expired after it (the test reads what the request wrote).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, has_app_context
from flask.testing import FlaskClient

from shop import auth
from shop.extensions import db
from testkit import databases, rawhttp


class FreshContextClient(FlaskClient):
    csrf: str = ""

    def open(self, *args, **kwargs):
        outer = has_app_context()
        if outer:
            db.session.commit()
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        if outer:
            db.session.expire_all()
        return response

    def form(self, path: str, data: dict | None = None, **kwargs):
        """POST a form with this client's CSRF token (see ``csrf``)."""
        return self.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)


@contextmanager
def app_under_test(app: Flask) -> Iterator[Flask]:
    """``app`` as a test's app: its context pushed for the test, a fresh one per client
    request, every table emptied afterwards."""
    app.test_client_class = FreshContextClient
    with app.app_context():
        yield app
        databases.clean_up()


def fresh_client(app) -> FreshContextClient:
    """A client for ``app`` whose requests never share ``g`` or a database session."""
    app.test_client_class = FreshContextClient
    return app.test_client()


def csrf_token_in(html: str) -> str:
    token = rawhttp.csrf_token_in(html)
    assert token, "the page has no CSRF token field"
    return token


def unsigned(token: str) -> str:
    """The session's CSRF token inside a signed one: flask-wtf signs it with the time, so two
    pages a second apart carry different strings for the same token."""
    return token.split(".", 1)[0]


def log_in(client: FlaskClient, user) -> None:
    """``user`` signed in on ``client``'s session, as the shop's login leaves it (Flask-Login's
    claim, the nav's account links: ``auth.remember_links``, and for a confirmed address
    ``auth.remember_verified``'s mark)."""
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
        session[auth.LINKS] = [bool(user.is_maker), bool(user.is_admin)]
        if user.email_verified_at is not None:
            session[auth.VERIFIED] = True

"""A test client whose every request runs in its own app context, as in a real server.

The ``app`` fixture keeps one app context pushed for the whole test, and Flask reuses a pushed
context for test-client requests, so ``g`` (Flask-Login's cached user, Flask-WTF's CSRF token,
``g.render_error``) would otherwise leak from one request, or one client, to the next.
"""

from __future__ import annotations

from flask.testing import FlaskClient


class FreshContextClient(FlaskClient):
    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


def fresh_client(app) -> FreshContextClient:
    """A client for ``app`` whose requests never share ``g`` or a database session."""
    app.test_client_class = FreshContextClient
    return app.test_client()

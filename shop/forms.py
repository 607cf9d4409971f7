"""Form pieces every area shares."""

from __future__ import annotations

from flask import request
from flask_wtf import FlaskForm


class ButtonForm(FlaskForm):
    """A button that changes something (log out, confirm, retry, unsubscribe): only its CSRF
    token."""


def invalid_status(form: FlaskForm) -> int:
    """The status of a form page shown again: 422 after a refused POST, 200 on first sight."""
    return 422 if request.method == "POST" else 200

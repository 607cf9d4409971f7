"""Forms of the operator console. They check shape; the rules live in ``shop.operators``."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length


class InviteForm(FlaskForm):
    email = EmailField(
        "Maker's email",
        validators=[
            DataRequired(message="Enter the email the invitation goes to."),
            Length(max=254),
        ],
    )
    display_name = StringField(
        "Name (optional)",
        validators=[Length(max=80, message="A name is at most 80 characters.")],
        description="Pre-filled for them; they can change it.",
    )


class SuspendForm(FlaskForm):
    reason = TextAreaField(
        "Why",
        validators=[
            DataRequired(message="Say why: the maker and the audit trail will read it."),
            Length(max=500, message="Keep the reason under 500 characters."),
        ],
    )

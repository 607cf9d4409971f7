"""Development-only pages: the local mailbox the demo's email goes to. The blueprint is
registered only when SHOP_ENV=development, so every other environment answers 404."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, render_template

from shop import mail

bp = Blueprint("dev", __name__, url_prefix="/dev")

# The HTML part is shown as a mail client would: its own inline styles, no scripts, no framing.
MESSAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'"


def _mailbox() -> Path:
    return Path(current_app.config["SHOP_MAILBOX_DIR"])


@bp.get("/mailbox")
def mailbox():
    directory = _mailbox()
    entries = [mail.read_mailbox_entry(directory, name) for name in mail.mailbox_entries(directory)]
    return render_template(
        "dev/mailbox.html",
        entries=[entry for entry in entries if entry is not None],
        uses_mailbox=mail.uses_mailbox(current_app.config),
    )


@bp.get("/mailbox/<name>")
def message(name: str):
    entry = mail.read_mailbox_entry(_mailbox(), name)
    if entry is None:
        abort(404)
    return render_template("dev/message.html", entry=entry)


@bp.get("/mailbox/<name>/html")
def message_html(name: str):
    entry = mail.read_mailbox_entry(_mailbox(), name)
    if entry is None:
        abort(404)
    return (
        entry.html,
        200,
        {
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": MESSAGE_CSP,
        },
    )

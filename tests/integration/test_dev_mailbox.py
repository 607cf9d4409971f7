"""Without SMTP_URL, development delivers to a local mailbox read at /dev/mailbox; the page
exists only in development."""

from __future__ import annotations

from pathlib import Path

import pytest

import config as settings
from shop import clock, create_app, mail, outbox
from shop.extensions import db
from testkit.factories import make_customer
from tests.security.helpers import PRODUCTION_BASE_URL, production_app
from tests.support.clients import app_under_test


@pytest.fixture
def dev_app(database_url, tmp_path):
    config = settings.DevelopmentConfig()
    config.SQLALCHEMY_DATABASE_URI = database_url
    config.SHOP_MAILBOX_DIR = str(tmp_path / "mailbox")
    config.SMTP_URL = None
    config.SHOP_BASE_URL = "http://shop.test"
    config.RATELIMIT_ENABLED = False
    with app_under_test(create_app(config)) as app:
        yield app


def _send_one(subject: str = "Hello from the shop") -> str:
    user = make_customer()
    rendered = mail.Rendered(subject=subject, text="Plain words.\n", html="<p>Rich words.</p>")
    outbox.enqueue("test", recipient=user.email, rendered=rendered, user=user)
    db.session.commit()
    assert outbox.deliver(clock.now()).sent == 1
    return user.email


def test_development_without_smtp_url_delivers_to_the_local_mailbox(dev_app):
    assert isinstance(mail.transport(), mail.MailboxTransport)
    email = _send_one()

    page = dev_app.test_client().get("/dev/mailbox")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Hello from the shop" in html and email in html


def test_a_mailbox_message_shows_its_text_and_its_html_part(dev_app):
    _send_one()
    client = dev_app.test_client()
    [name] = mail.mailbox_entries(mail.transport().directory)

    message = client.get(f"/dev/mailbox/{name}")
    html_part = client.get(f"/dev/mailbox/{name}/html")

    assert "Plain words." in message.get_data(as_text=True)
    assert html_part.get_data(as_text=True).strip() == "<p>Rich words.</p>"
    assert "script-src" not in html_part.headers["Content-Security-Policy"]


@pytest.mark.parametrize("name", ["../secret.eml", "nothing-here.eml", "..%2F..%2Fconfig.py"])
def test_the_mailbox_serves_only_messages_it_lists(dev_app, name):
    _send_one()
    assert dev_app.test_client().get(f"/dev/mailbox/{name}").status_code == 404


def test_the_mailbox_page_does_not_exist_in_testing(app, client):
    assert client.get("/dev/mailbox").status_code == 404


def test_the_mailbox_page_does_not_exist_in_production(monkeypatch, tmp_path):
    app = production_app(monkeypatch, f"sqlite:///{tmp_path / 'prod.sqlite3'}")
    with app.app_context():
        page = app.test_client().get("/dev/mailbox", base_url=PRODUCTION_BASE_URL)
        assert page.status_code == 404


def test_smtp_url_wins_over_the_mailbox_in_development(dev_app, smtp_server):
    dev_app.config["SMTP_URL"] = smtp_server.url
    _send_one()
    assert len(smtp_server.received) == 1
    assert mail.mailbox_entries(Path(dev_app.config["SHOP_MAILBOX_DIR"])) == []

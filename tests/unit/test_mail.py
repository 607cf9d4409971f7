"""Building messages and reading SMTP_URL: what reaches a header is always one line."""

from __future__ import annotations

import pytest

import config as settings
from shop import create_app, mail


@pytest.fixture
def app_context():
    app = create_app(settings.TestingConfig())
    with app.app_context():
        yield app


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://relay.internal:25", ("smtp", "relay.internal", 25, None, False)),
        ("smtp://relay.internal", ("smtp", "relay.internal", 25, None, False)),
        (
            "smtp://user:pa%40ss@mail.example.com:587",
            ("smtp", "mail.example.com", 587, "user", True),
        ),
        ("smtp://user:secret@mail.example.com", ("smtp", "mail.example.com", 587, "user", True)),
        ("smtp://mail.example.com:587", ("smtp", "mail.example.com", 587, None, True)),
        ("smtps://user:secret@mail.example.com", ("smtps", "mail.example.com", 465, "user", False)),
    ],
)
def test_smtp_url_chooses_plain_starttls_or_implicit_tls(url, expected):
    transport = mail.SmtpTransport.from_url(url, timeout=5)
    scheme, host, port, user, starttls = expected
    assert (transport.scheme, transport.host, transport.port) == (scheme, host, port)
    assert (transport.username, transport.starttls) == (user, starttls)


def test_a_password_with_escapes_is_decoded_and_never_shown():
    transport = mail.SmtpTransport.from_url("smtp://user:pa%40ss@mail.example.com:587", timeout=5)
    assert transport.password == "pa@ss"
    assert "pa@ss" not in repr(transport)


@pytest.mark.parametrize("url", ["http://mail.example.com", "smtp://", "mail.example.com:25"])
def test_a_smtp_url_that_is_not_one_is_refused_with_its_name(url):
    with pytest.raises(mail.MailSettingError, match="SMTP_URL"):
        mail.SmtpTransport.from_url(url, timeout=5)


def test_production_refuses_a_smtp_url_that_is_not_one(monkeypatch, tmp_path):
    from tests.security.helpers import production_env

    production_env(monkeypatch, f"sqlite:///{tmp_path / 'p.sqlite3'}", SMTP_URL="mail:25")
    with pytest.raises(RuntimeError, match="SMTP_URL"):
        create_app(settings.load())


def test_a_subject_with_cr_lf_stays_one_header(app_context):
    message = mail.build(
        recipient="ada@example.com",
        subject="Hello\r\nBcc: victim@example.com",
        text="t",
        html="<p>h</p>",
    )
    assert "Bcc" not in message
    assert message["Subject"] == "Hello Bcc: victim@example.com"
    assert b"\r\nBcc:" not in message.as_bytes()


def test_a_sender_display_name_with_cr_lf_never_reaches_a_header(app_context):
    app_context.config["MAIL_FROM"] = "Evil\r\nBcc: x@example.com <shop@example.com>"
    message = mail.build(recipient="ada@example.com", subject="s", text="t", html="<p>h</p>")
    assert "Bcc" not in message
    assert message["From"].addresses[0].addr_spec == "shop@example.com"


def test_a_message_has_a_text_and_an_html_alternative(app_context):
    message = mail.build(recipient="ada@example.com", subject="s", text="words", html="<p>w</p>")
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(preferencelist=("plain",)).get_content().strip() == "words"
    assert message.get_body(preferencelist=("html",)).get_content().strip() == "<p>w</p>"


def test_links_are_absolute_from_shop_base_url(app_context):
    app_context.config["SHOP_BASE_URL"] = "https://shop.example.com/store"
    assert mail.link("account.login") == "https://shop.example.com/store/account/login"

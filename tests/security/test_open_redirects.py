"""``next=`` only ever leads to a page of this shop: open-redirect payloads through the real login
and registration flows, and ``shop.auth.safe_next`` on its own."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from shop.auth import safe_next
from tests.security.helpers import form_token, log_in, register

PAYLOADS = [
    "//evil.com",
    "///evil.com",
    "////evil.com",
    "/\\evil.com",
    "\\/evil.com",
    "\\\\evil.com",
    "/\\/evil.com",
    "https://evil.com",
    "http://evil.com/account/",
    "HTTPS://evil.com",
    "http:evil.com",
    "https:/evil.com",
    "//evil.com@shop.test",
    "http://shop.test@evil.com",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.com",
    "/%2F/evil.com",
    "/%2f%2fevil.com",
    "%252F%252Fevil.com",
    "/%252F%252Fevil.com",
    "/%25252F%25252Fevil.com",
    "/%5Cevil.com",
    "/%5C%5Cevil.com",
    "/%09/evil.com",
    "/\t/evil.com",
    "/\n/evil.com",
    "/\r\nLocation: https://evil.com",
    "/%0d%0aSet-Cookie:%20x=1",
    "/%00/evil.com",
    "/\x00/evil.com",
    " //evil.com",
    "\t//evil.com",
    "/ /evil.com",
    "/\uff0fevil.com",  # fullwidth solidus
    "/\u2215evil.com",  # division slash
    "/%EF%BC%8F%EF%BC%8Fevil.com",
    "\u3002evil.com",
    "evil.com",
    "./evil.com",
    "../evil.com",
    "?next=//evil.com",
    "#//evil.com",
    "/" + "a" * 2100,
]

SAFE = [
    "/",
    "/account/",
    "/drops/winter-release",
    "/drops/winter-release?ref=mail#buy-3",
    "/account/orders/AbC_123-x",
    "/u/abcdef0123456789",
    "/search?q=rye%20whiskey",
]


def _assert_on_site(location: str) -> None:
    parts = urlsplit(location)
    assert parts.scheme in ("", "http") and parts.netloc in ("", "localhost"), location
    assert location.startswith("/") and not location.startswith("//"), location
    assert "\\" not in location and "evil" not in location.lower(), location


@pytest.mark.parametrize("payload", PAYLOADS)
def test_safe_next_refuses_every_off_site_payload(payload):
    assert safe_next(payload) is None


@pytest.mark.parametrize("target", SAFE)
def test_safe_next_keeps_ordinary_paths(target):
    assert safe_next(target) == target


def test_logging_in_never_redirects_off_site(app, customer):
    for payload in PAYLOADS:
        browser = app.test_client()
        response = log_in(browser, customer.email, next=payload)
        assert response.status_code == 303, payload
        _assert_on_site(response.headers["Location"])
        assert response.headers["Location"] == "/", payload


def test_logging_in_follows_a_same_site_next(app, customer):
    browser = app.test_client()
    response = log_in(browser, customer.email, next="/account/orders")
    assert response.headers["Location"] == "/account/orders"


def test_the_next_in_the_query_string_is_checked_too(app, customer):
    browser = app.test_client()
    token = form_token(browser, "/account/login?next=//evil.com")
    response = browser.post(
        "/account/login?next=//evil.com",
        data={"csrf_token": token, "email": customer.email, "password": "correct horse battery"},
    )
    _assert_on_site(response.headers["Location"])


@pytest.mark.parametrize("payload", ["//evil.com", "/%2F/evil.com", "https://evil.com"])
def test_registering_never_redirects_off_site(app, payload):
    browser = app.test_client()
    email = f"new{abs(hash(payload))}@example.com"
    response = register(browser, "New Person", email, "a long enough password", next=payload)
    assert response.status_code == 303
    _assert_on_site(response.headers["Location"])


def test_the_login_redirect_carries_only_a_relative_next(client):
    response = client.get("/account/orders?x=1", headers={"Host": "localhost"})
    location = response.headers["Location"]
    assert response.status_code == 302
    assert urlsplit(location).path == "/account/login"
    assert parse_qs(urlsplit(location).query)["next"] == ["/account/orders?x=1"]

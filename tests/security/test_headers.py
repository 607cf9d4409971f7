"""Security headers on every kind of response, and pages that keep to the CSP (no inline code)."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from shop import images, inventory
from shop.extensions import db
from testkit.factories import AT_DROP, make_batch, make_customer, make_drop
from tests.security.helpers import PRODUCTION_BASE_URL, log_in

REQUIRED_CSP = ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'")


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def pages(app) -> dict[str, tuple[str, dict]]:
    """One address for each kind of page the shop serves: name -> (path, request options)."""
    drop = make_drop()
    batch = make_batch(drop=drop)
    buyer = make_customer()
    order = inventory.hold(batch.id, 1, customer=buyer, now=AT_DROP)
    inventory.confirm(order, now=AT_DROP)
    image = images.store(_png())
    db.session.commit()
    code = order.units[0].certificate_code
    json = {"headers": {"Accept": "application/json"}}
    return {
        "home": ("/", {}),
        "drop": (f"/drops/{drop.slug}", {}),
        "batch": (f"/products/{batch.product.slug}/batches/{batch.number}", {}),
        "certificate": (f"/u/{code}", {}),
        "certificate-qr": (f"/u/{code}/qr.svg", {}),
        "login": ("/account/login", {}),
        "register": ("/account/register", {}),
        "login-redirect": ("/account/", {}),
        "not-found": ("/no/such/page", {}),
        "method-not-allowed": ("/account/logout", {}),
        "json-stock": (f"/api/drops/{drop.slug}/stock", {}),
        "json-error": ("/no/such/page", json),
        "media": (f"/media/{image.filename}", {}),
        "static": ("/static/css/shop.css", {}),
    }


def test_every_kind_of_page_carries_the_security_headers(client, pages):
    for name, (path, options) in pages.items():
        response = client.get(path, **options)
        assert response.status_code in (200, 302, 404, 405), (name, response.status_code)
        headers = response.headers
        csp = headers.get("Content-Security-Policy", "")
        strict_enough = all(d in csp for d in REQUIRED_CSP) or "default-src 'none'" in csp
        assert strict_enough, (name, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (name, csp)
        assert headers.get("X-Content-Type-Options") == "nosniff", name
        assert headers.get("Referrer-Policy") == "strict-origin-when-cross-origin", name
        assert headers.get("X-Frame-Options") == "DENY", name
        assert "Server" not in headers, (name, headers.get("Server"))
        assert "Strict-Transport-Security" not in headers, name  # only in production
        assert re.fullmatch(r"[0-9a-f]{16}", headers.get("X-Request-Id", "")), name
        response.close()


def test_html_pages_are_never_cached_by_the_browser(client, pages):
    for name in ("home", "batch", "login", "not-found"):
        path, options = pages[name]
        response = client.get(path, **options)
        assert response.headers.get("Cache-Control") == "no-store", name


def test_only_the_anonymous_drop_page_may_be_kept_by_a_proxy_and_never_a_signed_in_one(
    client, customer, pages
):
    path, _ = pages["drop"]
    anonymous = client.get(path)
    assert log_in(client, customer.email).status_code == 303
    signed_in = client.get(path)

    assert anonymous.headers["Cache-Control"].startswith("public, max-age=0, s-maxage=")
    assert anonymous.headers["ETag"] and "Set-Cookie" not in anonymous.headers
    assert signed_in.headers["Cache-Control"] == "private, no-store"
    assert "ETag" not in signed_in.headers


_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
_EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
_STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE)
_JS_URL = re.compile(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)


def test_pages_keep_to_the_csp_with_no_inline_script_handler_or_style(client, customer, pages):
    """The CSP forbids inline code; a page that relied on it would simply break in browsers."""
    assert log_in(client, customer.email).status_code == 303
    for name, (path, options) in pages.items():
        response = client.get(path, **options)
        html = response.get_data(as_text=True) if response.mimetype == "text/html" else ""
        response.close()
        assert not _INLINE_SCRIPT.search(html), (name, _INLINE_SCRIPT.search(html))
        assert not _EVENT_HANDLER.search(html), (name, _EVENT_HANDLER.search(html))
        assert not _STYLE_ATTRIBUTE.search(html), (name, _STYLE_ATTRIBUTE.search(html))
        assert not _JS_URL.search(html), name


def test_production_adds_hsts_and_the_same_headers(production):
    app = production()
    response = app.test_client().get("/static/css/shop.css", base_url=PRODUCTION_BASE_URL)
    assert response.status_code == 200
    hsts = response.headers.get("Strict-Transport-Security", "")
    assert "max-age=63072000" in hsts and "includeSubDomains" in hsts
    assert all(d in response.headers["Content-Security-Policy"] for d in REQUIRED_CSP)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in response.headers
    response.close()


def test_the_csp_allows_forms_to_post_only_to_us_and_stripe(app):
    response = app.test_client().get("/account/login")
    csp = response.headers["Content-Security-Policy"]
    form_action = next(d for d in csp.split("; ") if d.startswith("form-action"))
    assert form_action.split()[1] == "'self'"
    assert len(form_action.split()) == 3  # 'self' and the one Stripe origin


def test_gunicorn_announces_itself_without_a_version_number():
    """gunicorn writes its own ``Server`` header after the app; it must not carry a version."""
    import gunicorn.http.wsgi

    assert gunicorn.http.wsgi.SERVER == "gunicorn"

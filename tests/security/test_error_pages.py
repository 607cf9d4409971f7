"""Every 4xx/5xx is a generic page (or JSON) that leaks nothing; crashes are logged under a
request id that the page shows; oversized bodies get a friendly 413; foreign hosts a 400."""

from __future__ import annotations

import html as htmllib
import logging
import re

import pytest
from flask import Blueprint
from sqlalchemy import text

from shop.extensions import db
from tests.security.helpers import form_token, log_in

SECRET_WORDS = "sk_live_leakedkey123 /etc/shop/secret.cfg"


@pytest.fixture
def crashing(app):
    """A throwaway blueprint, registered on this test's app only, whose views fail badly."""
    bp = Blueprint("crash", __name__, url_prefix="/_crash")

    @bp.get("/python")
    def python_error():
        raise RuntimeError(f"boom with {SECRET_WORDS}")

    @bp.get("/sql")
    def sql_error():
        db.session.execute(text("SELECT secret_column FROM no_such_table_xyz"))
        return "unreachable"

    @bp.route("/post", methods=["POST"])
    def post_error():
        raise KeyError("password_hash")

    app.register_blueprint(bp)
    return app


LEAKS = re.compile(
    r"Traceback|File \"|line \d+|sqlalchemy|psycopg|sqlite3|SELECT|no_such_table|secret_column|"
    r"RuntimeError|KeyError|password_hash|sk_live_|/etc/shop|/work/|site-packages|werkzeug",
    re.IGNORECASE,
)


@pytest.mark.parametrize("path", ["/_crash/python", "/_crash/sql"])
def test_an_unexpected_error_shows_a_generic_page_with_the_logged_request_id(
    crashing, client, caplog, path
):
    with caplog.at_level(logging.ERROR, logger="shop.errors"):
        response = client.get(path)
    html = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong on our side" in html
    assert not LEAKS.search(html), LEAKS.search(html)
    request_id = response.headers["X-Request-Id"]
    assert f"<code>{request_id}</code>" in html
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback goes to the log only


def test_an_unexpected_error_answers_json_callers_with_the_request_id_only(crashing, client):
    response = client.get("/_crash/python", headers={"Accept": "application/json"})
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    assert not LEAKS.search(response.get_data(as_text=True))


def test_a_crash_in_a_form_post_leaks_nothing_either(crashing, client):
    token = form_token(client)
    response = client.post("/_crash/post", data={"csrf_token": token})
    assert response.status_code == 500
    assert not LEAKS.search(response.get_data(as_text=True))


def test_a_request_id_from_a_proxy_is_kept_only_when_it_is_well_formed(client):
    kept = client.get("/", headers={"X-Request-Id": "lb-1234abcd-5678"})
    assert kept.headers["X-Request-Id"] == "lb-1234abcd-5678"
    replaced = client.get("/", headers={"X-Request-Id": "<script>alert(1)</script>"})
    assert re.fullmatch(r"[0-9a-f]{16}", replaced.headers["X-Request-Id"])


@pytest.mark.parametrize(
    ("method", "path", "status", "title"),
    [
        ("GET", "/no/such/page", 404, "We couldn't find that page"),
        ("GET", "/account/logout", 405, "That isn't allowed here"),
        ("POST", "/account/login", 400, "That request didn't look right"),  # no CSRF token
        ("GET", "/media/../../config.py", 404, "We couldn't find that page"),
        ("GET", "/products/x/batches/99999999999999999999", 404, "We couldn't find that page"),
    ],
)
def test_http_errors_are_generic_pages(client, method, path, status, title):
    response = client.open(path, method=method)
    html = htmllib.unescape(response.get_data(as_text=True))
    assert response.status_code == status
    assert title in html
    assert not LEAKS.search(html), LEAKS.search(html)
    assert "The CSRF token is missing" not in html  # Flask-WTF's own wording stays inside


def test_a_405_names_the_allowed_methods(client):
    response = client.get("/account/logout")
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_json_callers_get_json_errors(client):
    response = client.get("/api/drops/no-such-drop/stock")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_an_oversized_body_gets_the_friendly_413_page(app, client):
    too_big = b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post("/account/login", data=too_big, content_type="application/octet-stream")
    assert response.status_code == 413
    assert "That upload is too large" in response.get_data(as_text=True)


def test_a_urlencoded_form_larger_than_the_form_memory_limit_is_refused(app, client):
    token = form_token(client)
    big = "a" * (app.config["MAX_FORM_MEMORY_SIZE"] + 1)
    response = client.post("/account/login", data={"csrf_token": token, "email": big})
    assert response.status_code == 413
    assert "That upload is too large" in response.get_data(as_text=True)


def test_a_multipart_field_larger_than_the_form_memory_limit_is_refused(app, client):
    # A small limit keeps the test body in memory (the client spools big bodies to a file).
    app.config["MAX_FORM_MEMORY_SIZE"] = 4096
    token = form_token(client)
    big = "a" * 4097
    response = client.post(
        "/account/login",
        data={"csrf_token": token, "email": big},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    assert "That upload is too large" in response.get_data(as_text=True)


def test_a_multipart_form_with_too_many_parts_is_refused(app, client):
    token = form_token(client)
    fields = {f"f{i}": "x" for i in range(app.config["MAX_FORM_PARTS"] + 1)}
    response = client.post(
        "/account/login",
        data={"csrf_token": token, **fields},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413


def test_a_normal_form_is_well_within_the_limits(client, customer):
    assert log_in(client, customer.email).status_code == 303


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example"},
        {"Host": "shop.test.evil.example"},
        {"Host": "evil.example", "X-Forwarded-Host": "shop.test"},
    ],
)
def test_a_foreign_host_header_gets_a_plain_400(client, headers):
    response = client.get("/account/login", headers=headers)
    html = htmllib.unescape(response.get_data(as_text=True))
    assert response.status_code == 400
    assert "evil.example" not in html
    assert "That request didn't look right" in html


def test_a_foreign_host_is_refused_for_posts_too(client, customer):
    token = form_token(client)
    response = client.post(
        "/account/login",
        data={"csrf_token": token, "email": customer.email, "password": "whatever"},
        headers={"Host": "evil.example"},
    )
    assert response.status_code == 400
    assert "evil.example" not in response.get_data(as_text=True)
    assert "Location" not in response.headers


def test_a_forwarded_host_never_reaches_generated_urls(client, customer):
    """With a trusted Host, a spoofed X-Forwarded-Host still cannot steer a redirect."""
    response = client.get("/account/", headers={"X-Forwarded-Host": "evil.example"})
    assert response.status_code == 302
    assert "evil.example" not in response.headers["Location"]

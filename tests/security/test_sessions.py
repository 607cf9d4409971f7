"""Session cookies: their flags, a fresh session at login (no fixation), and server-side
revocation at logout and password change — a copied cookie, remember-me included, stops working."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from testkit.factories import PASSWORD
from tests.security.helpers import (
    PRODUCTION_BASE_URL,
    change_password,
    csrf_token_in,
    form_token,
    is_logged_in,
    log_in,
    log_out,
)

SESSION = "smallbatch_session"
REMEMBER = "remember_token"


def _set_cookie_headers(response, name: str) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]


def _flags(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]} | {
        part.strip().lower() for part in header.split(";")[1:] if "samesite" in part.lower()
    }


def _copy_cookie(source, target, name: str) -> None:
    cookie = source.get_cookie(name)
    assert cookie is not None, f"no {name} cookie to copy"
    target.set_cookie(name, cookie.value)


def test_session_and_remember_cookies_are_httponly_and_samesite_lax(client, customer):
    response = log_in(client, customer.email, remember=True)
    for name in (SESSION, REMEMBER):
        [header] = _set_cookie_headers(response, name)
        flags = _flags(header)
        assert "httponly" in flags, header
        assert "samesite=lax" in flags, header
        assert "secure" not in flags, header  # plain http in development and tests


def test_production_cookies_are_secure_httponly_and_samesite_lax(
    production, customer, database_url
):
    app = production(database_url)
    browser = app.test_client()
    page = browser.get("/account/login", base_url=PRODUCTION_BASE_URL)
    response = browser.post(
        "/account/login",
        base_url=PRODUCTION_BASE_URL,
        headers={"Referer": f"{PRODUCTION_BASE_URL}/account/login"},  # CSRF is strict on https
        data={
            "csrf_token": csrf_token_in(page.get_data(as_text=True)),
            "email": customer.email,
            "password": PASSWORD,
            "remember": "y",
        },
    )
    assert response.status_code == 303
    for name in (SESSION, REMEMBER, "smallbatch_device"):
        [header] = _set_cookie_headers(response, name)
        assert {"secure", "httponly", "samesite=lax"} <= _flags(header), header


def test_login_starts_a_fresh_session_so_a_planted_one_is_worthless(app, client, customer):
    before_token = form_token(client)
    planted = client.get_cookie(SESSION).value
    assert log_in(client, customer.email).status_code == 303
    assert client.get_cookie(SESSION).value != planted
    after_token = form_token(client, "/account/")
    assert after_token != before_token
    attacker = app.test_client()
    attacker.set_cookie(SESSION, planted)
    assert not is_logged_in(attacker)
    # The pre-login token no longer works in the logged-in session either.
    stale = client.post("/account/logout", data={"csrf_token": before_token})
    assert stale.status_code == 400
    assert is_logged_in(client)


def test_logout_ends_every_copy_of_the_session(app, client, customer):
    log_in(client, customer.email)
    thief = app.test_client()
    _copy_cookie(client, thief, SESSION)
    assert is_logged_in(thief)
    assert log_out(client).status_code == 303
    assert not is_logged_in(client)
    assert not is_logged_in(thief)


def test_logout_ends_a_copied_remember_me_cookie_too(app, client, customer):
    log_in(client, customer.email, remember=True)
    thief = app.test_client()
    _copy_cookie(client, thief, REMEMBER)  # no session cookie: remember-me alone logs in
    assert is_logged_in(thief)
    log_out(client)
    fresh_thief = app.test_client()
    _copy_cookie(thief, fresh_thief, REMEMBER)
    assert not is_logged_in(thief)
    assert not is_logged_in(fresh_thief)


def test_logging_out_on_one_device_logs_out_the_others(app, client, customer):
    phone = app.test_client()
    log_in(client, customer.email)
    log_in(phone, customer.email, remember=True)
    log_out(client)
    assert not is_logged_in(phone)


def test_a_password_change_logs_out_every_other_session_but_this_one(app, client, customer):
    laptop = app.test_client()
    log_in(client, customer.email, remember=True)
    log_in(laptop, customer.email, remember=True)
    remembered = app.test_client()
    _copy_cookie(laptop, remembered, REMEMBER)
    response = change_password(client, PASSWORD, "a whole new phrase")
    assert response.status_code == 303
    assert is_logged_in(client)
    assert not is_logged_in(laptop)
    assert not is_logged_in(remembered)
    assert log_in(app.test_client(), customer.email, "a whole new phrase").status_code == 303


@pytest.mark.parametrize("remember", [False, True])
def test_a_wrong_current_password_changes_nothing_and_keeps_other_sessions(
    app, client, customer, remember
):
    other = app.test_client()
    log_in(client, customer.email)
    log_in(other, customer.email, remember=remember)
    response = change_password(client, "not my password", "a whole new phrase")
    assert response.status_code == 422
    assert is_logged_in(other)


def test_a_new_secret_key_takes_effect_at_once_and_fallbacks_keep_sessions(app, client, customer):
    """The cookie signer is built once per set of keys, not per request: a rotated key must
    still end old cookies at once, and a fallback key keep them."""
    log_in(client, customer.email)
    assert is_logged_in(client)
    old_key = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = "a-brand-new-secret-key-for-this-test-only-0123456789"
    assert not is_logged_in(client)
    app.config["SECRET_KEY_FALLBACKS"] = [old_key]
    assert is_logged_in(client)


def test_a_session_read_before_flask_is_checked_as_flask_checks_it(app):
    """``SessionCookies.read`` (the signed-in drop page before Flask) verifies a cookie with the
    app's own signer and age limit, and what it keeps of a good cookie never outlives the key
    it was signed with or the cookie's age."""
    sessions = app.session_interface
    cookie = sessions.get_signing_serializer(app).dumps({"_user_id": "7:token", "csrf_token": "x"})

    first = sessions.read(app, cookie)
    assert first == {"_user_id": "7:token", "csrf_token": "x"}
    assert sessions.read(app, cookie) is first  # verified once
    assert sessions.read(app, cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB")) is None
    assert sessions.read(app, "") is None and sessions.read(app, "not-a-cookie") is None

    old_key = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = "a-brand-new-secret-key-for-this-test-only-0123456789"
    assert sessions.read(app, cookie) is None  # a rotated key ends it at once
    app.config["SECRET_KEY_FALLBACKS"] = [old_key]
    assert sessions.read(app, cookie) == first

    app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"] = old_key, []
    app.permanent_session_lifetime = timedelta(seconds=1)
    young = sessions.get_signing_serializer(app).dumps({"_user_id": "8:token"})
    assert sessions.read(app, young) == {"_user_id": "8:token"}
    time.sleep(2.1)  # older than the limit (signatures count whole seconds)
    assert sessions.read(app, young) is None

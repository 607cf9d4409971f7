"""Throttling (shop/limits.py), counted in Redis as in production: brute force on one account,
credential stuffing from one address, registration floods — without locking a customer out of
their own account, and with a 429 that says when to come back."""

from __future__ import annotations

import html
import re

import pytest

from shop import create_app, limits
from shop.extensions import db
from shop.models import User
from testkit import databases
from testkit.factories import PASSWORD, make_customer
from tests.security.helpers import (
    FreshContextClient,
    close_limiter_storage,
    form_token,
    log_in,
    log_out,
)
from tests.support import redis_server
from tests.support.stripe import live_batch, sign_in

ATTACKER = "203.0.113.66"
CUSTOMER_IP = "198.51.100.7"


@pytest.fixture
def app_overrides(rate_limits):
    return rate_limits


def _fail(client, email: str, ip: str):
    return log_in(client, email, "wrong password", ip=ip)


def _wait_seconds(response) -> int:
    return int(response.headers["Retry-After"])


def test_ten_failures_a_minute_lock_that_account_from_that_address(client, customer):
    for _ in range(10):
        assert _fail(client, customer.email, ATTACKER).status_code == 401
    blocked = log_in(client, customer.email, ip=ATTACKER)  # even with the right password
    assert blocked.status_code == 429
    assert 0 < _wait_seconds(blocked) <= 61
    text = html.unescape(blocked.get_data(as_text=True))
    assert re.search(r"try again in (\d+ seconds|a minute)", text), text
    # The customer, elsewhere, is not affected.
    assert log_in(client, customer.email, ip=CUSTOMER_IP).status_code == 303


def test_the_lock_counts_the_normalised_email_so_case_tricks_do_not_reset_it(client, customer):
    variants = [customer.email, customer.email.upper(), f"  {customer.email}  "]
    for i in range(10):
        _fail(client, variants[i % len(variants)], ATTACKER)
    assert _fail(client, customer.email.title(), ATTACKER).status_code == 429


def test_successful_logins_never_count(app, customer):
    for _ in range(limits_amount(limits.LOGIN_PER_ACCOUNT_AND_IP) + 3):
        browser = app.test_client()
        assert log_in(browser, customer.email, ip=CUSTOMER_IP).status_code == 303


def test_thirty_failures_an_hour_from_anywhere_lock_the_account_for_new_devices(
    app, client, customer
):
    for i in range(30):
        _fail(client, customer.email, f"203.0.113.{i // 10 + 1}")  # 10 per address, 3 addresses
    fresh = app.test_client()
    response = log_in(fresh, customer.email, ip="192.0.2.200")
    assert response.status_code == 429
    assert _wait_seconds(response) <= 3600


def test_a_customer_on_a_device_they_used_before_is_never_locked_out_by_an_attacker(
    app, client, customer
):
    phone = app.test_client()
    assert log_in(phone, customer.email, ip=CUSTOMER_IP).status_code == 303
    log_out(phone)
    for i in range(40):
        _fail(client, customer.email, f"203.0.113.{i // 10 + 1}")
    assert log_in(phone, customer.email, ip=CUSTOMER_IP).status_code == 303


def test_a_forged_device_cookie_does_not_bypass_the_account_limit(app, client, customer):
    for i in range(30):
        _fail(client, customer.email, f"203.0.113.{i // 10 + 1}")
    forger = app.test_client()
    forger.set_cookie(limits.DEVICE_COOKIE, "W10.forged.signature", path="/account")
    assert log_in(forger, customer.email, ip="192.0.2.201").status_code == 429


def test_one_address_trying_many_accounts_is_stopped(client):
    for i in range(30):
        assert _fail(client, f"victim{i}@example.com", ATTACKER).status_code == 401
    assert _fail(client, "victim-next@example.com", ATTACKER).status_code == 429
    assert _fail(client, "victim-next@example.com", CUSTOMER_IP).status_code == 401


def test_registration_is_throttled_per_address(app, client):
    token = form_token(client, "/account/register")
    data = {"csrf_token": token, "display_name": "Flood", "password": "short"}  # all 422
    for i in range(20):
        response = client.post(
            "/account/register",
            data={**data, "email": f"flood{i}@example.com"},
            environ_base={"REMOTE_ADDR": ATTACKER},
        )
        assert response.status_code == 422
    blocked = client.post(
        "/account/register",
        data={**data, "display_name": "Real", "email": "real@example.com", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": ATTACKER},
    )
    assert blocked.status_code == 429
    assert db.session.query(User).filter_by(email="real@example.com").count() == 0
    elsewhere = client.post(
        "/account/register",
        data={**data, "display_name": "Real", "email": "real@example.com", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": CUSTOMER_IP},
    )
    assert elsewhere.status_code == 303


def test_the_login_page_itself_is_never_throttled(client, customer):
    for _ in range(11):
        _fail(client, customer.email, ATTACKER)
    for _ in range(5):
        page = client.get("/account/login", environ_base={"REMOTE_ADDR": ATTACKER})
        assert page.status_code == 200


def test_a_json_caller_gets_a_429_with_retry_after_in_the_body(client, customer):
    for _ in range(10):
        _fail(client, customer.email, ATTACKER)
    response = log_in(client, customer.email, ip=ATTACKER, headers={"Accept": "application/json"})
    assert response.status_code == 429
    error = response.get_json()["error"]
    assert error["code"] == "too_many_requests"
    assert abs(error["retry_after"] - _wait_seconds(response)) <= 1  # read a moment apart
    assert "try again" in error["message"]


def test_counters_live_in_redis_so_every_app_process_shares_them(
    app, client, customer, rate_limits, database_url
):
    for _ in range(10):
        _fail(client, customer.email, ATTACKER)
    assert redis_server.keys_with(rate_limits["RATELIMIT_KEY_PREFIX"])
    # A second app (another gunicorn worker, another host) sees the same counters.
    close_limiter_storage()
    other = create_app(databases.testing_config(database_url, **rate_limits))
    other.test_client_class = FreshContextClient
    try:
        assert log_in(other.test_client(), customer.email, ip=ATTACKER).status_code == 429
    finally:
        with other.app_context():
            db.engine.dispose()


def limits_amount(policy: str) -> int:
    return int(policy.split()[0])


@pytest.fixture
def batch(app):
    found = live_batch(edition_size=500, limit=2)
    db.session.commit()
    return found


def _click_buy(client, batch_id: int, csrf: str, ip: str, quantity: str = "0"):
    """A buy attempt that stops at the quantity check (422): counted, no Stripe call."""
    return client.post(
        f"/checkout/batches/{batch_id}",
        data={"quantity": quantity, "csrf_token": csrf},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_one_customer_gets_ten_buy_attempts_a_minute(app, client, customer, batch):
    csrf = sign_in(client, customer)
    for _ in range(10):
        assert _click_buy(client, batch.id, csrf, CUSTOMER_IP).status_code == 422
    assert _click_buy(client, batch.id, csrf, CUSTOMER_IP).status_code == 429
    neighbour = app.test_client()
    other = make_customer()
    db.session.commit()
    csrf = sign_in(neighbour, other)
    assert _click_buy(neighbour, batch.id, csrf, CUSTOMER_IP).status_code == 422


def test_continuing_to_payment_has_a_limit_of_its_own_on_get_and_post(app, client, customer):
    """Every buy is followed by a GET of pay (each asks Stripe): 20 a minute per customer,
    counted apart from the buy button's 10."""
    csrf = sign_in(client, customer)
    path = "/checkout/orders/AAAAAAAAAAAAAAAAAAAAAA/pay"  # nobody's order: a 404, still counted
    for attempt in range(20):
        if attempt % 2:
            answer = client.get(path, environ_base={"REMOTE_ADDR": CUSTOMER_IP})
        else:
            answer = client.post(
                path, data={"csrf_token": csrf}, environ_base={"REMOTE_ADDR": CUSTOMER_IP}
            )
        assert answer.status_code == 404
    assert client.get(path, environ_base={"REMOTE_ADDR": CUSTOMER_IP}).status_code == 429
    batch = live_batch(edition_size=5, limit=2)
    db.session.commit()
    assert _click_buy(client, batch.id, csrf, CUSTOMER_IP).status_code == 422  # buy: its own


def test_an_office_of_64_buyers_behind_one_address_is_not_throttled(app, batch):
    buyers = [make_customer() for _ in range(64)]
    db.session.commit()
    browsers = []
    for buyer in buyers:
        browser = app.test_client()
        browsers.append((browser, sign_in(browser, buyer)))
    for _ in range(2):  # everyone clicks twice in the first minute (a sold-out retry)
        for browser, csrf in browsers:
            assert _click_buy(browser, batch.id, csrf, "192.0.2.10").status_code == 422


def test_one_address_is_capped_across_customers(app, batch):
    app.config["SHOP_LIMIT_BUY_PER_IP"] = "12 per minute"  # the same rule, smaller numbers
    buyers = [make_customer() for _ in range(4)]
    db.session.commit()
    statuses = []
    for buyer in buyers:
        browser = app.test_client()
        csrf = sign_in(browser, buyer)
        statuses += [_click_buy(browser, batch.id, csrf, ATTACKER).status_code for _ in range(4)]
    assert statuses.count(422) == 12 and statuses.count(429) == 4


def test_anonymous_visitors_pressing_buy_are_sent_to_log_in_not_throttled(app, batch):
    browser = app.test_client()
    csrf = form_token(browser)
    for _ in range(20):
        response = _click_buy(browser, batch.id, csrf, "192.0.2.10", quantity="1")
        assert response.status_code == 303
        assert "/account/login" in response.headers["Location"]


def test_the_stripe_webhook_is_never_rate_limited(client):
    for _ in range(40):
        response = client.post("/stripe/webhook", data=b"{}", content_type="application/json")
        assert response.status_code == 400  # unsigned: refused, but never a 429

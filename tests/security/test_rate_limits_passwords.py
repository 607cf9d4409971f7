"""Every endpoint that runs Argon2 (64 MiB each in production) is rate-limited, and a process
runs only a few hashes at once: a request that finds no free slot in time is told to try again
(503), changes nothing, and is not counted as a failed login."""

from __future__ import annotations

import html
from contextlib import ExitStack

import pytest

from shop import limits, passwords
from shop.extensions import db
from shop.models import User
from testkit.factories import PASSWORD, make_customer
from tests.security.helpers import form_token, log_in
from tests.support.stripe import live_batch, sign_in

OFFICE_IP = "192.0.2.10"
ATTACKER = "203.0.113.66"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def app_overrides(rate_limits):
    return rate_limits


def _change_password(client, csrf: str, current: str, ip: str = OFFICE_IP):
    return client.post(
        "/account/password",
        data={
            "csrf_token": csrf,
            "current_password": current,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
        environ_base={"REMOTE_ADDR": ip},
    )


def _password_hash(user_id: int) -> str:
    return db.session.get(User, user_id).password_hash


def test_a_stolen_session_gets_five_guesses_at_the_current_password_a_minute(app, client, customer):
    csrf = sign_in(client, customer)
    before = _password_hash(customer.id)
    for _ in range(5):
        assert _change_password(client, csrf, "a guess at it").status_code == 422
    blocked = _change_password(client, csrf, PASSWORD)  # even the right one now waits
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 61
    assert _password_hash(customer.id) == before
    neighbour = app.test_client()
    other = make_customer()
    db.session.commit()
    assert _change_password(neighbour, sign_in(neighbour, other), PASSWORD).status_code == 303


def test_password_changes_from_one_address_are_capped_across_customers(app):
    app.config["SHOP_LIMIT_PASSWORD_CHANGE_PER_IP"] = "6 per minute"  # smaller numbers
    statuses = []
    for _ in range(4):
        browser = app.test_client()
        user = make_customer()
        db.session.commit()
        csrf = sign_in(browser, user)
        statuses += [_change_password(browser, csrf, "wrong", ATTACKER).status_code for _ in (1, 2)]
    assert statuses.count(422) == 6 and statuses.count(429) == 2


def test_successful_logins_have_a_generous_but_finite_limit_per_address(app, customer):
    app.config["SHOP_LIMIT_LOGIN_ATTEMPTS_PER_IP"] = "5 per minute"  # smaller numbers
    for _ in range(5):
        assert log_in(app.test_client(), customer.email, ip=ATTACKER).status_code == 303
    assert log_in(app.test_client(), customer.email, ip=ATTACKER).status_code == 429
    assert log_in(app.test_client(), customer.email, ip=OFFICE_IP).status_code == 303


def test_the_login_limit_per_address_counts_every_attempt_right_or_wrong(app, customer):
    app.config["SHOP_LIMIT_LOGIN_ATTEMPTS_PER_IP"] = "4 per minute"
    client = app.test_client()
    assert log_in(client, customer.email, "wrong", ip=ATTACKER).status_code == 401
    assert log_in(client, customer.email, ip=ATTACKER).status_code == 303
    assert log_in(app.test_client(), "nobody@example.com", "x", ip=ATTACKER).status_code == 401
    assert log_in(app.test_client(), customer.email, ip=ATTACKER).status_code == 303
    assert log_in(app.test_client(), customer.email, ip=ATTACKER).status_code == 429


def test_an_office_of_64_customers_logs_in_from_one_address_for_a_drop(app):
    customers = [make_customer() for _ in range(64)]
    db.session.commit()
    for customer in customers:
        assert log_in(app.test_client(), customer.email, ip=OFFICE_IP).status_code == 303
    assert limits.LOGIN_ATTEMPTS_PER_IP.startswith("120 per minute")


def test_choosing_a_new_password_from_a_reset_link_is_throttled_per_address(app, client):
    token = form_token(client, "/account/forgot-password")
    path = "/account/reset-password/not-a-real-link"
    data = {"csrf_token": token, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    for _ in range(10):
        answer = client.post(path, data=data, environ_base={"REMOTE_ADDR": ATTACKER})
        assert answer.status_code == 400  # a bad link, but counted
    assert client.post(path, data=data, environ_base={"REMOTE_ADDR": ATTACKER}).status_code == 429
    assert client.post(path, data=data, environ_base={"REMOTE_ADDR": OFFICE_IP}).status_code == 400
    assert client.get(path, environ_base={"REMOTE_ADDR": ATTACKER}).status_code == 400  # GET: free


def test_accepting_invitations_is_throttled_per_address(app, client):
    token = form_token(client, "/account/register")
    fields = {"csrf_token": token, "display_name": "Flood", "new_password": NEW_PASSWORD}
    fields["confirm_password"] = NEW_PASSWORD
    for n in range(20):
        path = f"/account/invitation/made-up-{n}"
        answer = client.post(path, data=fields, environ_base={"REMOTE_ADDR": ATTACKER})
        assert answer.status_code == 400  # a bad link, but counted
    path = "/account/invitation/made-up-last"
    assert client.post(path, data=fields, environ_base={"REMOTE_ADDR": ATTACKER}).status_code == 429
    assert (
        client.post(path, data=fields, environ_base={"REMOTE_ADDR": OFFICE_IP}).status_code == 400
    )


# --- at most SHOP_PASSWORD_CONCURRENCY hashes at once per process ---------------------------


def take_every_slot(app) -> ExitStack:
    """Hold every hashing slot of this process, as long-running hashes would (release by
    closing the stack); waiting for one gives up at once."""
    app.config["SHOP_PASSWORD_WAIT_SECONDS"] = 0
    stack = ExitStack()
    for _ in range(app.config["SHOP_PASSWORD_CONCURRENCY"]):
        stack.enter_context(passwords.hashing_slot())
    return stack


@pytest.fixture
def every_slot_taken(app):
    with take_every_slot(app):
        yield


def _busy(response) -> bool:
    text = html.unescape(response.get_data(as_text=True))
    return (
        response.status_code == 503
        and "checking a lot of passwords" in text
        and int(response.headers["Retry-After"]) > 0
        and "Traceback" not in text
    )


def test_with_every_slot_taken_a_login_is_told_to_try_again(app, customer, every_slot_taken):
    assert _busy(log_in(app.test_client(), customer.email, ip=ATTACKER))
    json_caller = log_in(
        app.test_client(), customer.email, ip=ATTACKER, headers={"Accept": "application/json"}
    )
    assert json_caller.status_code == 503
    assert json_caller.get_json()["error"]["code"] == "busy"


def test_busy_answers_do_not_use_up_the_failed_login_limit(app, customer):
    with take_every_slot(app):
        for _ in range(12):  # more than the 10 failures a minute per account and address
            assert _busy(log_in(app.test_client(), customer.email, "wrong", ip=ATTACKER))
    assert log_in(app.test_client(), customer.email, "wrong", ip=ATTACKER).status_code == 401
    assert log_in(app.test_client(), customer.email, ip=ATTACKER).status_code == 303


def test_with_every_slot_taken_registration_and_password_changes_change_nothing(
    app, customer, every_slot_taken
):
    client = app.test_client()
    token = form_token(client, "/account/register")
    answer = client.post(
        "/account/register",
        data={
            "csrf_token": token,
            "email": "new@example.com",
            "display_name": "New",
            "password": PASSWORD,
        },
    )
    assert _busy(answer)
    assert db.session.query(User).filter_by(email="new@example.com").count() == 0
    browser = app.test_client()
    before = _password_hash(customer.id)
    assert _busy(_change_password(browser, sign_in(browser, customer), PASSWORD))
    assert _password_hash(customer.id) == before


def test_pages_without_password_work_never_wait_for_a_slot(app):
    batch = live_batch(edition_size=5)
    db.session.commit()
    visitor = app.test_client()
    with take_every_slot(app):
        assert visitor.get("/").status_code == 200
        assert visitor.get(f"/drops/{batch.drop.slug}").status_code == 200
        assert visitor.get("/account/login").status_code == 200

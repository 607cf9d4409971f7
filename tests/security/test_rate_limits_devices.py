"""The known-device exemption from the per-account login limit (shop/limits.py): it applies to a
browser that logged in to the account from the same network (/24, /48), with the account's
current password, within 90 days — and to nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer

from shop import clock, limits
from shop.extensions import db
from shop.models import User
from testkit.factories import PASSWORD
from tests.security.helpers import form_token, log_in, log_out

HOME = "198.51.100.7"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def app_overrides(rate_limits):
    return rate_limits


def lock_out(app, email: str) -> None:
    """An attacker fails 30 times from three addresses: the account is closed to new devices."""
    attacker = app.test_client()
    for i in range(30):
        answer = log_in(attacker, email, "wrong password", ip=f"203.0.113.{i // 10 + 1}")
        assert answer.status_code == 401
    assert log_in(app.test_client(), email, ip="192.0.2.200").status_code == 429


def known_phone(app, email: str, ip: str = HOME):
    phone = app.test_client()
    assert log_in(phone, email, ip=ip).status_code == 303
    log_out(phone)
    return phone


@pytest.mark.parametrize(
    ("first", "later", "known"),
    [
        (HOME, HOME, True),
        (HOME, "198.51.100.200", True),  # the same line, a new address from its /24
        (HOME, "198.51.101.7", False),
        (HOME, "192.0.2.50", False),
        ("2001:db8:1:2::5", "2001:db8:1:ff::9", True),  # the same /48
        ("2001:db8:1:2::5", "2001:db8:2:2::5", False),
    ],
)
def test_a_known_device_is_known_only_on_the_network_it_logged_in_from(
    app, customer, first, later, known
):
    phone = known_phone(app, customer.email, first)
    lock_out(app, customer.email)
    assert log_in(phone, customer.email, ip=later).status_code == (303 if known else 429)


def test_a_known_device_is_forgotten_when_the_password_changes(app, customer):
    phone = known_phone(app, customer.email)
    laptop = app.test_client()
    assert log_in(laptop, customer.email, ip="192.0.2.77").status_code == 303
    changed = laptop.post(
        "/account/password",
        data={
            "csrf_token": form_token(laptop, "/account/password"),
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
        environ_base={"REMOTE_ADDR": "192.0.2.77"},
    )
    assert changed.status_code == 303
    lock_out(app, customer.email)
    # The phone's entry was for the old password: with the new one it is a new device now.
    assert log_in(phone, customer.email, NEW_PASSWORD, ip=HOME).status_code == 429
    # The laptop changed the password itself, so it stays known (with the new password).
    assert log_in(laptop, customer.email, NEW_PASSWORD, ip="192.0.2.77").status_code == 303


def test_a_device_cookie_for_one_account_does_not_open_another(app, customer):
    phone = known_phone(app, customer.email)
    other = User(
        email="other@example.com",
        password_hash=db.session.get(User, customer.id).password_hash,  # even the same password
        display_name="Other",
        role="customer",
    )
    db.session.add(other)
    db.session.commit()
    lock_out(app, other.email)
    assert log_in(phone, other.email, ip=HOME).status_code == 429


@pytest.mark.parametrize(("days_ago", "known"), [(89, True), (91, False)])
def test_a_device_entry_lasts_ninety_days(app, customer, days_ago, known):
    user = db.session.get(User, customer.id)
    issued = int((clock.now() - timedelta(days=days_ago)).timestamp())
    cookie = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="smallbatch.device").dumps(
        [limits.device_entry(user.email, user.password_hash, HOME, issued)]
    )
    phone = app.test_client()
    phone.set_cookie(limits.DEVICE_COOKIE, cookie, path="/account")
    lock_out(app, customer.email)
    assert log_in(phone, customer.email, ip=HOME).status_code == (303 if known else 429)


def test_the_device_cookie_lasts_ninety_days_and_names_neither_account_nor_address(app, customer):
    answer = log_in(app.test_client(), customer.email, ip=HOME)
    cookie = next(
        c for c in answer.headers.getlist("Set-Cookie") if c.startswith(limits.DEVICE_COOKIE)
    )
    assert f"Max-Age={90 * 86400}" in cookie
    assert "Path=/account" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    entries = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="smallbatch.device").loads(
        value
    )
    [[digest, issued]] = entries
    assert len(digest) == 32 and int(digest, 16) >= 0  # an HMAC: no email, hash or address
    assert abs(issued - clock.now().timestamp()) < 60

"""Brute force and enumeration on the account forms, and mass assignment at registration."""

from __future__ import annotations

import re

import argon2
import pytest

from shop.extensions import db
from shop.models import User
from testkit.factories import PASSWORD
from tests.security.helpers import is_logged_in, log_in, register

WRONG = "Wrong email or password."


@pytest.fixture
def argon2_work(monkeypatch) -> dict[str, int]:
    """Counts Argon2 computations (hash and verify each cost one), by spying on the library."""
    counts = {"hash": 0, "verify": 0}
    real_hash, real_verify = argon2.PasswordHasher.hash, argon2.PasswordHasher.verify

    def hash_(self, *args, **kwargs):
        counts["hash"] += 1
        return real_hash(self, *args, **kwargs)

    def verify(self, *args, **kwargs):
        counts["verify"] += 1
        return real_verify(self, *args, **kwargs)

    monkeypatch.setattr(argon2.PasswordHasher, "hash", hash_)
    monkeypatch.setattr(argon2.PasswordHasher, "verify", verify)
    return counts


def _error_text(response) -> set[str]:
    html = response.get_data(as_text=True)
    found = re.findall(r'class="[^"]*error[^"]*"[^>]*>([^<]+)<', html)
    return {text.strip() for text in found if text.strip()}


def test_an_unknown_email_and_a_wrong_password_look_the_same(app, customer):
    unknown = log_in(app.test_client(), "nobody@example.com", PASSWORD)
    wrong = log_in(app.test_client(), customer.email, "not the password")
    malformed = log_in(app.test_client(), "not-an-email", PASSWORD)
    assert unknown.status_code == wrong.status_code == malformed.status_code == 401
    assert WRONG in unknown.get_data(as_text=True)
    assert _error_text(unknown) == _error_text(wrong) == _error_text(malformed) == {WRONG}


def test_an_unknown_email_costs_the_same_password_work_as_a_wrong_password(
    app, customer, argon2_work
):
    log_in(app.test_client(), "warm-up@example.com", PASSWORD)  # the decoy hash is made once
    work = {}
    for case, email in (
        ("unknown", "nobody@example.com"),
        ("wrong", customer.email),
        ("malformed", "not an email"),
    ):
        argon2_work.update(hash=0, verify=0)
        log_in(app.test_client(), email, "not the password")
        work[case] = dict(argon2_work)
    assert work["unknown"] == work["wrong"] == work["malformed"] == {"hash": 0, "verify": 1}


def test_registering_a_taken_email_says_so_but_changes_and_reveals_nothing(app, customer):
    customer.display_name = "Secret Name"
    db.session.commit()
    before = customer.password_hash
    browser = app.test_client()
    response = register(browser, "Mallory", customer.email.upper(), "mallorys own password")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "already exists" in html  # the accepted trade-off, see SECURITY.md
    assert "Secret Name" not in html
    assert not is_logged_in(browser)
    db.session.expire_all()
    assert db.session.get(User, customer.id).password_hash == before
    assert db.session.query(User).count() == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"role": "maker"},
        {"is_admin": "1"},
        {"is_admin": "true", "role": "maker", "id": "1"},
        {"session_token": "attacker-chosen", "password_hash": "x"},
    ],
)
def test_registration_ignores_fields_it_does_not_offer(app, extra):
    browser = app.test_client()
    response = register(browser, "Eve", "eve@example.com", "eves long password", **extra)
    assert response.status_code == 303
    user = db.session.query(User).filter_by(email="eve@example.com").one()
    assert user.role == "customer" and user.is_admin is False
    assert user.session_token != "attacker-chosen" and user.password_hash.startswith("$argon2id$")


def test_a_customer_cannot_open_the_maker_console(app, customer):
    browser = app.test_client()
    log_in(browser, customer.email)
    assert browser.get("/maker/").status_code == 403

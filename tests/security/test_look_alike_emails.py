"""Look-alike addresses at registration and login: refused with a clear message, and full-width
forms are the same account as their plain form."""

from __future__ import annotations

from shop.extensions import db
from shop.models import User
from testkit.factories import PASSWORD
from tests.security.helpers import is_logged_in, log_in, register

CYRILLIC_E = "\u0435"


def _register(browser, email: str):
    return register(browser, "Mallory", email, "mallorys own password")


def test_registering_a_look_alike_of_an_address_is_refused_with_a_clear_message(app, customer):
    local, domain = customer.email.split("@")
    look_alike = local.replace("e", CYRILLIC_E, 1) + "@" + domain
    assert look_alike != customer.email and CYRILLIC_E in look_alike
    browser = app.test_client()
    response = _register(browser, look_alike)
    assert response.status_code == 422
    assert "different alphabets" in response.get_data(as_text=True)
    assert not is_logged_in(browser)
    assert db.session.query(User).count() == 1


def test_a_full_width_address_is_the_same_account_as_its_plain_form(app, customer):
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in customer.email)
    assert _register(app.test_client(), full_width).status_code == 422
    assert db.session.query(User).count() == 1
    browser = app.test_client()
    assert log_in(browser, full_width, PASSWORD).status_code == 303
    assert is_logged_in(browser)


def test_logging_in_with_a_look_alike_address_says_why_without_checking_a_password(app, customer):
    local, domain = customer.email.split("@")
    look_alike = local.replace("e", CYRILLIC_E, 1) + "@" + domain
    browser = app.test_client()
    response = log_in(browser, look_alike, PASSWORD)
    assert response.status_code == 422
    assert "different alphabets" in response.get_data(as_text=True)
    assert not is_logged_in(browser)

"""One account per mailbox: plus-addressing and Gmail's dots make no second account for an
inbox that already has one (SECURITY.md, "Fake accounts multiplying per-customer limits")."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shop import operators
from shop.errors import InvalidInput
from shop.extensions import db
from shop.models import User
from testkit.factories import AT_DROP, make_customer
from tests.security.helpers import is_logged_in, register

SAME_MAILBOX = "An account already uses that mailbox"


def accounts() -> list[tuple[str, str | None]]:
    db.session.rollback()
    return [tuple(row) for row in db.session.execute(select(User.email, User.mailbox))]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("ann@example.com", "ann+drop@example.com"),
        ("ann+one@example.com", "ann+two@example.com"),
        ("ann@gmail.com", "a.n.n@gmail.com"),
        ("a.nn+x@googlemail.com", "ann@gmail.com"),
    ],
)
def test_a_second_address_of_one_mailbox_cannot_register(app, first, second):
    assert register(app.test_client(), "Ann", first, "anns own password").status_code == 303
    browser = app.test_client()

    response = register(browser, "Ann again", second, "anns own password")

    assert response.status_code == 422
    assert SAME_MAILBOX in html.unescape(response.get_data(as_text=True))
    assert not is_logged_in(browser)
    assert [email for email, _ in accounts()] == [first]


def test_dots_count_outside_gmail_and_mail_goes_to_the_address_as_typed(app):
    for address in ("ann@example.com", "a.nn@example.com", "Ann+Shop@Example.org"):
        assert register(app.test_client(), "Ann", address, "anns own password").status_code == 303

    assert accounts() == [
        ("ann@example.com", "ann@example.com"),
        ("a.nn@example.com", "a.nn@example.com"),
        ("ann+shop@example.org", "ann@example.org"),
    ]


def test_a_maker_cannot_be_invited_at_a_customers_mailbox(app):
    customer = make_customer(email="ann@example.com")
    operator = make_customer(email="operator@example.com")
    db.session.commit()

    with pytest.raises(InvalidInput, match=SAME_MAILBOX):
        operators.invite(operator, "ann+maker@example.com", "Ann's Rye", now=AT_DROP)
    assert customer.mailbox == "ann@example.com"


def test_the_database_keeps_one_account_per_mailbox_even_without_the_application(app):
    make_customer(email="ann@example.com")
    db.session.commit()

    with pytest.raises(IntegrityError):
        make_customer(email="ann+again@example.com")  # the column default names its mailbox
    db.session.rollback()

"""Email addresses (shop.emails): what passes for another address is refused, and which
mailbox an address reaches."""

from __future__ import annotations

import pytest

from shop import emails, users
from shop.errors import InvalidInput


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("\uff4d\uff41\uff4c\uff4c\uff4f\uff52\uff59@example.com", "mallory@example.com"),
        ("Mallory@Example.com", "mallory@example.com"),
        ("иван@почта.рф", "иван@почта.рф"),  # a genuine Cyrillic address
        ("ﬁona@example.com", "fiona@example.com"),  # the "ﬁ" ligature
    ],
)
def test_an_address_is_stored_in_its_nfkc_lower_case_form(typed, stored):
    assert users.normalise_email(typed) == stored


@pytest.mark.parametrize(
    "typed",
    [
        "p\u0430ypal@example.com",  # a Cyrillic "a" among Latin letters
        "mallory@ex\u0430mple.com",  # ... in the domain
        "\u0430\u0440\u0440@example.com",  # all Cyrillic, all with a Latin twin: "app"
        "\u03bf\u03c1\u03b5\u03bd@example.com",  # all Greek look-alikes: "open"
        "ivan@\u043f\u043e\u0447\u0442a.\u0440\u0444",  # a Latin "a" in a Cyrillic label
    ],
)
def test_an_address_that_could_pass_for_another_is_refused(typed):
    with pytest.raises(users.LookAlikeEmail, match="different alphabets"):
        users.normalise_email(typed)


def test_a_look_alike_is_a_kind_of_invalid_input():
    assert issubclass(users.LookAlikeEmail, InvalidInput)


@pytest.mark.parametrize(
    ("address", "inbox"),
    [
        ("ann@example.com", "ann@example.com"),
        ("ann+shop@example.com", "ann@example.com"),
        ("ann+a+b@example.com", "ann@example.com"),
        ("a.nn@example.com", "a.nn@example.com"),  # dots are letters everywhere but Gmail
        ("a.n.n+drop@gmail.com", "ann@gmail.com"),
        ("ann@googlemail.com", "ann@gmail.com"),
        ("+only@example.com", "+only@example.com"),
        ("ann+x@sub.gmail.com", "ann@sub.gmail.com"),
    ],
)
def test_an_address_names_the_mailbox_it_reaches(address, inbox):
    assert emails.mailbox(address) == inbox

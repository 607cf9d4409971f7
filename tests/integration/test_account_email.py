"""Email verification and password reset, through the outbox and a real SMTP server: the links
in the messages are followed with the test client."""

from __future__ import annotations

import html
import time
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from shop import clock, outbox, passwords, recovery, verification
from shop.extensions import db
from shop.models import Message, User
from testkit.factories import PASSWORD, make_customer
from tests.support.clients import csrf_token_in
from tests.support.stripe import live_batch, sign_in, stripe_settings

NEW_PASSWORD = "a much better passphrase"


def _page(answer) -> str:
    """The page as a person reads it (entities such as &#39; decoded)."""
    return html.unescape(answer.get_data(as_text=True))


@pytest.fixture
def app_overrides(emulator, smtp_server):
    return {**stripe_settings(emulator), "SMTP_URL": smtp_server.url}


def _link(smtp_server, to: str, path: str) -> str:
    """Send what is due, then the path of the newest link to ``path`` mailed to ``to``."""
    outbox.deliver(clock.now())
    for received in reversed(smtp_server.received):
        if received.envelope_to == [to]:
            for link in received.links():
                if path in link:
                    return "/" + link.split("://", 1)[1].split("/", 1)[1]
    raise AssertionError(f"no {path} link mailed to {to}")


def _kinds(user_id: int) -> list[str]:
    db.session.rollback()
    return list(db.session.scalars(select(Message.kind).where(Message.user_id == user_id)))


def _user(email: str) -> User:
    db.session.rollback()
    return db.session.scalar(select(User).where(User.email == email))


def _register(client, email: str = "ada@example.com"):
    page = client.get("/account/register")
    return client.post(
        "/account/register",
        data={
            "display_name": "Ada Lovelace",
            "email": email,
            "password": PASSWORD,
            "csrf_token": csrf_token_in(_page(page)),
        },
    )


# --- verification --------------------------------------------------------------------------


def test_registering_writes_a_verification_email_with_the_account(app, client, smtp_server):
    assert _register(client).status_code == 303
    user = _user("ada@example.com")
    assert user.email_verified_at is None
    assert _kinds(user.id) == ["verify_email"]

    outbox.deliver(clock.now())
    [received] = smtp_server.received
    assert received.message["Subject"] == "Confirm your email address"
    assert "Confirm my email" in received.html
    assert any("/account/verify/" in link for link in received.links())


def test_following_the_verification_link_confirms_the_address(app, client, smtp_server):
    _register(client)
    link = _link(smtp_server, "ada@example.com", "/account/verify/")

    answer = client.get(link)

    assert answer.status_code == 303
    assert _user("ada@example.com").email_verified_at is not None
    assert "confirmed" in _page(client.get("/account/"))


def test_a_forged_verification_link_says_so_and_changes_nothing(app, client, smtp_server):
    _register(client)
    link = _link(smtp_server, "ada@example.com", "/account/verify/")

    answer = client.get(link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB"))

    assert answer.status_code == 400
    assert "isn't valid" in _page(answer)
    assert _user("ada@example.com").email_verified_at is None


def test_an_expired_verification_link_says_so_and_changes_nothing(app, customer):
    token = verification.link_token(customer)
    with pytest.raises(verification.tokens.LinkExpired, match="expired"):
        verification.verify(token, now=clock.now() + timedelta(days=4))
    assert _user(customer.email).email_verified_at is None


def test_resending_the_verification_link_is_throttled(app, client, customer):
    csrf = sign_in(client, customer)
    first = client.post("/account/verify/resend", data={"csrf_token": csrf})
    second = client.post("/account/verify/resend", data={"csrf_token": csrf}, follow_redirects=True)

    assert first.status_code == 303
    assert "a moment ago" in _page(second)
    assert _kinds(customer.id) == ["verify_email"]


def test_the_account_page_offers_to_resend_until_the_address_is_confirmed(app, client, customer):
    sign_in(client, customer)
    assert "Send the link again" in _page(client.get("/account/"))
    customer = _user(customer.email)
    customer.email_verified_at = clock.now()
    db.session.commit()
    assert "Send the link again" not in _page(client.get("/account/"))


@pytest.mark.parametrize("required", [True, False])
def test_buying_needs_a_confirmed_address_only_when_the_setting_says_so(app, client, required):
    app.config["SHOP_REQUIRE_VERIFIED_EMAIL"] = required
    batch = live_batch(edition_size=5, limit=2)
    customer = make_customer()
    db.session.commit()
    csrf = sign_in(client, customer)

    answer = client.post(f"/checkout/batches/{batch.id}", data={"quantity": 1, "csrf_token": csrf})

    if required:
        assert answer.status_code == 403
        assert "confirm your email" in _page(answer)
        db.session.rollback()
        assert db.session.get(type(batch), batch.id).held == 0
    else:
        assert answer.status_code == 303


def test_a_confirmed_customer_may_buy_when_confirmation_is_required(app, client):
    app.config["SHOP_REQUIRE_VERIFIED_EMAIL"] = True
    batch = live_batch(edition_size=5, limit=2)
    customer = make_customer()
    customer.email_verified_at = clock.now()
    db.session.commit()
    csrf = sign_in(client, customer)

    answer = client.post(f"/checkout/batches/{batch.id}", data={"quantity": 1, "csrf_token": csrf})

    assert answer.status_code == 303


def test_production_requires_confirmed_addresses_and_the_demo_does_not():
    import config as settings

    assert settings.ProductionConfig().SHOP_REQUIRE_VERIFIED_EMAIL is True
    assert settings.DevelopmentConfig().SHOP_REQUIRE_VERIFIED_EMAIL is False


# --- password reset ------------------------------------------------------------------------


def _ask_for_reset(client, email: str):
    page = client.get("/account/forgot-password")
    return client.post(
        "/account/forgot-password",
        data={"email": email, "csrf_token": csrf_token_in(_page(page))},
    )


def _choose(client, link: str, password: str = NEW_PASSWORD):
    page = client.get("/account/login")  # a CSRF token of this session, whatever the link says
    return client.post(
        link,
        data={
            "new_password": password,
            "confirm_password": password,
            "csrf_token": csrf_token_in(_page(page)),
        },
    )


def test_the_login_page_offers_forgot_your_password(app, client):
    page = _page(client.get("/account/login"))
    assert "Forgot your password?" in page and "/account/forgot-password" in page


def test_the_answer_is_the_same_whether_or_not_the_address_has_an_account(app, client, customer):
    known = _ask_for_reset(client, customer.email)
    unknown = _ask_for_reset(client, "nobody@example.com")

    def main(answer, email):  # the page's content, the address itself set aside
        return _page(answer).split("<main", 1)[1].split("</main>")[0].replace(email, "EMAIL")

    assert known.status_code == unknown.status_code == 200
    assert main(known, customer.email) == main(unknown, "nobody@example.com")
    assert _kinds(customer.id) == ["password_reset"]
    db.session.rollback()
    assert (
        db.session.scalar(select(Message).where(Message.recipient == "nobody@example.com")) is None
    )


@pytest.mark.parametrize(
    "bad",
    [
        "not-an-address",
        "ada@example.com\r\nBcc: victim@example.com",
        "a@b@c.com",
        "ada@exa mple.com",
    ],
)
def test_a_malformed_address_is_refused_on_the_form(app, client, bad):
    answer = _ask_for_reset(client, bad)
    assert answer.status_code == 422
    assert "doesn't look right" in _page(answer)
    db.session.rollback()
    assert db.session.scalar(select(Message)) is None


def test_the_reset_link_sets_the_password_and_ends_every_other_session(
    app, client, customer, smtp_server
):
    other_device = app.test_client()
    sign_in(other_device, customer)
    assert other_device.get("/account/").status_code == 200
    _ask_for_reset(client, customer.email)
    link = _link(smtp_server, customer.email, "/account/reset-password/")

    answer = _choose(client, link)

    assert answer.status_code == 303
    user = _user(customer.email)
    assert passwords.verify_password(user.password_hash, NEW_PASSWORD)
    assert user.email_verified_at is not None  # following the link proved the mailbox
    assert client.get("/account/").status_code == 200  # this browser is logged in
    assert other_device.get("/account/").status_code == 302  # the other one is not


def test_a_used_reset_link_says_so_and_changes_nothing(app, client, customer, smtp_server):
    _ask_for_reset(client, customer.email)
    link = _link(smtp_server, customer.email, "/account/reset-password/")
    second_tab = app.test_client()
    csrf = csrf_token_in(_page(second_tab.get(link)))  # opened before the link was used
    _choose(client, link)
    hash_after_first = _user(customer.email).password_hash

    again = second_tab.post(
        link,
        data={
            "new_password": "another one!",
            "confirm_password": "another one!",
            "csrf_token": csrf,
        },
    )
    reopened = second_tab.get(link)

    assert again.status_code == reopened.status_code == 400
    assert "already used" in _page(again) and "already used" in _page(reopened)
    assert _user(customer.email).password_hash == hash_after_first


def test_a_reset_link_dies_when_the_password_changes_another_way(
    app, client, customer, smtp_server
):
    _ask_for_reset(client, customer.email)
    link = _link(smtp_server, customer.email, "/account/reset-password/")
    user = _user(customer.email)
    user.password_hash = passwords.hash_password("changed in the meantime")
    db.session.commit()

    answer = client.get(link)

    assert answer.status_code == 400
    assert "password was changed" in _page(answer)


def test_a_forged_reset_link_says_so_and_changes_nothing(app, client, customer):
    before = _user(customer.email).password_hash
    forged = URLSafeTimedSerializer("not our secret", salt="smallbatch.reset-password").dumps(
        {"u": customer.id, "p": "x"}
    )

    answers = [
        client.get(f"/account/reset-password/{forged}"),
        _choose(client, f"/account/reset-password/{forged}"),
    ]

    assert {a.status_code for a in answers} == {400}
    assert all("isn't valid" in _page(a) for a in answers)
    assert _user(customer.email).password_hash == before


class _HourAgoSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 3601


def test_an_expired_reset_link_says_so_and_changes_nothing(app, client, customer):
    before = _user(customer.email).password_hash
    with app.test_request_context():
        payload = {"u": customer.id, "p": recovery._fingerprint(before)}
    old = URLSafeTimedSerializer(
        app.config["SECRET_KEY"], salt="smallbatch.reset-password", signer=_HourAgoSigner
    ).dumps(payload)

    answer = _choose(client, f"/account/reset-password/{old}")

    assert answer.status_code == 400
    assert "expired" in _page(answer)
    assert _user(customer.email).password_hash == before


def test_a_verification_token_does_not_reset_a_password(app, client, customer):
    token = verification.link_token(customer)
    answer = client.get(f"/account/reset-password/{token}")
    assert answer.status_code == 400


def test_reset_links_per_address_are_capped_silently(app, client, customer):
    answers = [_ask_for_reset(client, customer.email) for _ in range(5)]
    assert {a.status_code for a in answers} == {200}
    assert _kinds(customer.id) == ["password_reset"] * recovery.LINKS_PER_HOUR


def test_a_weak_new_password_is_refused_and_the_link_still_works(
    app, client, customer, smtp_server
):
    _ask_for_reset(client, customer.email)
    link = _link(smtp_server, customer.email, "/account/reset-password/")

    weak = _choose(client, link, "short")
    good = _choose(client, link)

    assert weak.status_code == 422
    assert good.status_code == 303

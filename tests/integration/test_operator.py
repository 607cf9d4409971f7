"""The operator console through the real views: invitations that work once and expire,
suspension that stops a maker's drops (and only theirs) without touching their customers'
orders, and a console nobody else can reach."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select

from shop import clock, inventory, operators
from shop.extensions import db
from shop.models import AuditEntry, Invitation, Message, Order, UnrecognisedPayment, User
from shop.models.order import HELD
from shop.models.user import MAKER
from testkit.factories import PASSWORD, make_batch, make_customer, make_drop, make_maker
from tests.support.clients import csrf_token_in
from tests.support.stripe import sign_in

NEW_PASSWORD = "a maker's own passphrase"


def _operator() -> User:
    operator = make_customer(name="Robin Operator")
    operator.is_admin = True
    db.session.commit()
    return operator


def _invite(client, email: str, name: str = "") -> str:
    """Invite through the console; the path of the link in the email it queued."""
    page = client.get("/operator/")
    answer = client.post(
        "/operator/invitations",
        data={
            "csrf_token": csrf_token_in(page.get_data(as_text=True)),
            "email": email,
            "display_name": name,
        },
    )
    assert answer.status_code == 303, answer.get_data(as_text=True)
    message = db.session.scalars(
        select(Message).where(Message.recipient == email.lower()).order_by(Message.id.desc())
    ).first()
    link = re.search(r"https?://\S+/account/invitation/\S+", message.text_body).group(0)
    return urlsplit(link).path


def _accept(client, path: str, *, name: str = "Wren Pottery"):
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    return client.post(
        path,
        data={
            "csrf_token": csrf_token_in(page.get_data(as_text=True)),
            "display_name": name,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )


def test_an_invited_maker_chooses_a_password_and_lands_in_their_console(app, client):
    operator = _operator()
    sign_in(client, operator)
    path = _invite(client, "Wren@Example.com", "Wren")
    client.post("/account/logout")
    newcomer = app.test_client()

    answer = _accept(newcomer, path)

    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/maker/")
    maker = db.session.scalar(select(User).where(User.email == "wren@example.com"))
    assert maker.role == MAKER and maker.display_name == "Wren Pottery"
    assert maker.email_verified_at is not None  # the link reached that mailbox
    assert newcomer.get("/maker/").status_code == 200
    invitation = db.session.scalar(select(Invitation))
    assert invitation.accepted_at is not None and invitation.user_id == maker.id
    assert path.rsplit("/", 1)[1] not in invitation.token_hash  # only a digest is stored


def test_an_invitation_link_works_once(app, client):
    sign_in(client, _operator())
    path = _invite(client, "once@example.com")
    assert _accept(app.test_client(), path).status_code == 303

    again = app.test_client().get(path)

    assert again.status_code == 400
    assert "already been used" in html.unescape(again.get_data(as_text=True))
    assert db.session.scalar(select(User).where(User.email == "once@example.com")) is not None


def test_an_expired_or_withdrawn_invitation_makes_no_account(app, client):
    operator = _operator()
    sign_in(client, operator)
    expired_path = _invite(client, "late@example.com")
    withdrawn_path = _invite(client, "withdrawn@example.com")
    late = db.session.scalar(select(Invitation).where(Invitation.email == "late@example.com"))
    late.expires_at = clock.now() - timedelta(seconds=1)
    withdrawn = db.session.scalar(
        select(Invitation).where(Invitation.email == "withdrawn@example.com")
    )
    page = client.get("/operator/")
    client.post(
        f"/operator/invitations/{withdrawn.id}/withdraw",
        data={"csrf_token": csrf_token_in(page.get_data(as_text=True))},
    )

    for path, words in ((expired_path, "has expired"), (withdrawn_path, "was withdrawn")):
        answer = app.test_client().get(path)
        assert answer.status_code == 400
        assert words in html.unescape(answer.get_data(as_text=True))
    assert app.test_client().get("/account/invitation/forged-token").status_code == 400
    assert db.session.scalar(select(User).where(User.role == MAKER)) is None


def test_inviting_again_leaves_only_the_newest_link_working(app, client):
    sign_in(client, _operator())
    first = _invite(client, "twice@example.com")
    second = _invite(client, "twice@example.com")

    assert app.test_client().get(first).status_code == 400
    assert _accept(app.test_client(), second).status_code == 303


def test_an_invitation_to_an_existing_account_or_a_bad_address_is_refused(app, client):
    existing = make_customer(email="taken@example.com")
    sign_in(client, _operator())
    page = client.get("/operator/")
    token = csrf_token_in(page.get_data(as_text=True))

    taken = client.post(
        "/operator/invitations", data={"csrf_token": token, "email": existing.email}
    )
    bad = client.post("/operator/invitations", data={"csrf_token": token, "email": "not an email"})

    assert taken.status_code == 422
    assert "already exists" in html.unescape(taken.get_data(as_text=True))
    assert bad.status_code in (400, 422)
    assert db.session.scalar(select(Invitation)) is None


def test_a_weak_password_on_the_invitation_page_is_refused_and_the_link_still_works(app, client):
    sign_in(client, _operator())
    path = _invite(client, "weak@example.com")
    newcomer = app.test_client()
    page = newcomer.get(path)

    weak = newcomer.post(
        path,
        data={
            "csrf_token": csrf_token_in(page.get_data(as_text=True)),
            "display_name": "Weak",
            "new_password": "short",
            "confirm_password": "short",
        },
    )

    assert weak.status_code == 422
    assert db.session.scalar(select(User).where(User.email == "weak@example.com")) is None
    assert _accept(newcomer, path).status_code == 303


def _suspend(client, maker: User, reason: str):
    """The operator's suspend form for ``maker``, sent with ``reason``."""
    page = client.get(f"/operator/makers/{maker.id}/suspend")
    token = csrf_token_in(page.get_data(as_text=True))
    return client.post(
        f"/operator/makers/{maker.id}/suspend", data={"csrf_token": token, "reason": reason}
    )


def test_a_suspended_makers_drop_stops_selling_and_their_orders_stay(app, client):
    operator = _operator()
    maker = make_maker()
    other_maker = make_maker()
    now = clock.now()
    batch = make_batch(drop=make_drop(maker, opens_at=now - timedelta(hours=1), closes_at=None))
    other = make_batch(
        drop=make_drop(other_maker, opens_at=now - timedelta(hours=1), closes_at=None)
    )
    buyer = make_customer()
    held = inventory.hold(batch.id, 1, customer=buyer, now=now)
    db.session.commit()
    sign_in(client, operator)

    answer = _suspend(client, maker, "Unpaid fees")

    assert answer.status_code == 303
    assert db.session.get(User, maker.id).suspended_at is not None
    assert not batch.drop.is_live(clock.now()) and other.drop.is_live(clock.now())
    refused = app.test_client()
    buyer_csrf = sign_in(refused, make_customer())
    bought = refused.post(
        f"/checkout/batches/{batch.id}", data={"csrf_token": buyer_csrf, "quantity": "1"}
    )
    assert bought.status_code in (409, 403, 422) or "/pay" not in bought.headers.get("Location", "")
    assert db.session.get(Order, held.id).state == HELD  # the customer's order is untouched
    assert inventory.hold(other.id, 1, customer=make_customer(), now=clock.now())
    entry = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert entry.action == "maker suspended" and "Unpaid fees" in entry.detail


def test_a_suspended_maker_is_logged_out_and_their_console_closed(app, client):
    operator = _operator()
    maker = make_maker()
    maker_client = app.test_client()
    sign_in(maker_client, maker)
    assert maker_client.get("/maker/").status_code == 200

    operators.suspend(operator, maker, now=clock.now(), reason="Counterfeit labels")
    db.session.commit()

    assert maker_client.get("/maker/").status_code == 302  # the old session ended
    sign_in(maker_client, db.session.get(User, maker.id))
    closed = maker_client.get("/maker/")
    assert closed.status_code == 403
    assert "suspended" in html.unescape(closed.get_data(as_text=True))


def test_reinstating_a_maker_lets_their_drop_sell_again(app, client):
    operator = _operator()
    maker = make_maker()
    batch = make_batch(
        drop=make_drop(maker, opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    )
    operators.suspend(operator, maker, now=clock.now(), reason="Checking a complaint")
    db.session.commit()
    sign_in(client, operator)
    page = client.get("/operator/")

    answer = client.post(
        f"/operator/makers/{maker.id}/reinstate",
        data={"csrf_token": csrf_token_in(page.get_data(as_text=True))},
    )

    assert answer.status_code == 303
    assert db.session.get(User, maker.id).suspended_at is None
    assert inventory.hold(batch.id, 1, customer=make_customer(), now=clock.now())


def test_suspending_without_a_reason_changes_nothing(app, client):
    operator = _operator()
    maker = make_maker()
    db.session.commit()
    sign_in(client, operator)

    answer = _suspend(client, maker, "  ")

    assert answer.status_code in (400, 422)
    assert db.session.get(User, maker.id).suspended_at is None


def test_the_operator_sees_every_makers_drops(app, client):
    make_drop(make_maker(name="First Maker"), title="Spring Honey")
    make_drop(make_maker(name="Second Maker"), title="Winter Rye")
    db.session.commit()
    sign_in(client, _operator())

    page = client.get("/operator/drops").get_data(as_text=True)

    assert "Spring Honey" in page and "Winter Rye" in page
    assert "First Maker" in page and "Second Maker" in page


def test_nobody_but_the_operator_reaches_the_console(app, client):
    assert client.get("/operator/").status_code == 302  # anonymous: log in first
    for user in (make_customer(), make_maker()):
        db.session.commit()
        other = app.test_client()
        token = sign_in(other, user)
        assert other.get("/operator/").status_code == 404
        assert other.get("/operator/drops").status_code == 404
        refused = other.post(
            "/operator/invitations", data={"csrf_token": token, "email": "x@example.com"}
        )
        assert refused.status_code == 404
    assert db.session.scalar(select(Invitation)) is None


def test_create_admin_makes_an_operator_from_the_command_line(app, runner):
    result = runner.invoke(
        args=["shop", "create-admin", "ops@example.com", "--password-stdin"],
        input=f"{PASSWORD}\n",
    )

    assert result.exit_code == 0, result.output
    operator = db.session.scalar(select(User).where(User.email == "ops@example.com"))
    assert operator.is_admin and operator.role != MAKER


def test_the_operator_sees_payments_the_shop_did_not_recognise(app, client):
    db.session.add(
        UnrecognisedPayment(
            session_id="cs_test_foreign",
            payment_intent_id="pi_foreign",
            amount_total=4200,
            currency="usd",
            client_reference_id="someone-elses-order",
        )
    )
    sign_in(client, _operator())

    page = client.get("/operator/payments").get_data(as_text=True)

    assert "cs_test_foreign" in page and "pi_foreign" in page and "someone-elses-order" in page

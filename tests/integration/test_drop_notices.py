""" "Notify me" and "The drop is live": one click or double opt-in, sent once per subscriber in
batches, with one-click unsubscribe that only ever unsubscribes its own address."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from shop import clock, notifications, outbox
from shop.extensions import db
from shop.models import DropSubscription, Message
from shop.models.drop import SCHEDULED
from testkit.factories import AT_DROP, OPENS_AT, make_batch, make_customer, make_drop
from tests.support.clients import csrf_token_in
from tests.support.stripe import sign_in


@pytest.fixture
def app_overrides(smtp_server):
    return {"SMTP_URL": smtp_server.url, "SHOP_NOTIFY_BATCH_SIZE": 2}


@pytest.fixture
def upcoming(app):
    drop = make_drop(state=SCHEDULED, title="The Spring Release")
    make_batch(drop=drop, edition_size=60)
    db.session.commit()
    return drop


def _page(answer) -> str:
    return html.unescape(answer.get_data(as_text=True))


def _subscriptions() -> list[DropSubscription]:
    db.session.rollback()
    return list(db.session.scalars(select(DropSubscription).order_by(DropSubscription.id)))


def _count(kind: str) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).where(Message.kind == kind)) or 0


def _notify(client, drop, email: str | None = None):
    page = client.get("/account/login")  # any page gives this session's CSRF token
    data = {"csrf_token": csrf_token_in(_page(page))}
    if email is not None:
        data["email"] = email
    return client.post(f"/notify/drops/{drop.slug}", data=data)


def _confirmed(drop, email: str) -> DropSubscription:
    subscription = DropSubscription(drop_id=drop.id, email=email, confirmed_at=clock.now())
    db.session.add(subscription)
    db.session.commit()
    return subscription


# --- subscribing ---------------------------------------------------------------------------


def test_a_signed_in_customer_subscribes_with_one_click(app, client, upcoming):
    customer = make_customer()
    db.session.commit()
    sign_in(client, customer)

    answer = _notify(client, upcoming)

    assert answer.status_code == 303
    [subscription] = _subscriptions()
    assert subscription.email == customer.email and subscription.confirmed_at is not None
    assert "You're on the list" in _page(client.get(f"/drops/{upcoming.slug}"))


def test_a_visitor_confirms_the_address_before_it_counts(app, client, upcoming, smtp_server):
    answer = _notify(client, upcoming, "Grace@Example.com")
    [pending] = _subscriptions()
    pending_email, pending_confirmed = pending.email, pending.confirmed_at
    outbox.deliver(clock.now())
    [received] = smtp_server.received
    [link] = [link for link in received.links() if "/confirm" in link]

    confirmed = client.get(link.removeprefix(app.config["SHOP_BASE_URL"]))

    assert answer.status_code == 303
    assert pending_email == "grace@example.com" and pending_confirmed is None
    assert received.message["Subject"] == "Confirm: tell me when The Spring Release opens"
    assert confirmed.status_code == 200 and "You're on the list" in _page(confirmed)
    assert _subscriptions()[0].confirmed_at is not None


def test_asking_twice_sends_one_confirmation(app, client, upcoming):
    _notify(client, upcoming, "grace@example.com")
    _notify(client, upcoming, "grace@example.com")
    assert _count("confirm_subscription") == 1


@pytest.mark.parametrize(
    "bad", ["not-an-address", "grace@example.com\r\nBcc: victim@example.com", "@example.com", ""]
)
def test_a_malformed_address_is_refused_with_a_message_and_nothing_stored(
    app, client, upcoming, bad
):
    answer = _notify(client, upcoming, bad)
    assert answer.status_code == 422
    assert "address" in _page(answer)
    assert _subscriptions() == []
    assert _count("confirm_subscription") == 0


def test_a_drop_that_is_live_already_takes_no_subscriptions(app, client):
    drop = make_drop(opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    db.session.commit()
    answer = _notify(client, drop, "grace@example.com")
    assert answer.status_code == 409
    assert _subscriptions() == []


# --- "The drop is live" --------------------------------------------------------------------


def test_the_worker_announces_a_live_drop_once_to_confirmed_subscribers_only(app, upcoming):
    for n in range(3):
        _confirmed(upcoming, f"fan{n}@example.com")
    db.session.add(DropSubscription(drop_id=upcoming.id, email="unconfirmed@example.com"))
    gone = _confirmed(upcoming, "gone@example.com")
    gone.unsubscribed_at = clock.now()
    db.session.commit()

    before = notifications.notify_live_drops(OPENS_AT - timedelta(seconds=1))
    first = notifications.notify_live_drops(AT_DROP)
    second = notifications.notify_live_drops(AT_DROP + timedelta(minutes=1))

    assert (before, first, second) == (0, 3, 0)
    db.session.rollback()
    recipients = db.session.scalars(select(Message.recipient).where(Message.kind == "drop_live"))
    assert sorted(recipients) == ["fan0@example.com", "fan1@example.com", "fan2@example.com"]


def test_drop_notices_go_out_in_batches_at_the_set_rate(app, upcoming, smtp_server):
    for n in range(5):
        _confirmed(upcoming, f"fan{n}@example.com")
    notifications.notify_live_drops(AT_DROP)
    every = timedelta(seconds=app.config["SHOP_NOTIFY_BATCH_SECONDS"])

    sent = [outbox.deliver(AT_DROP + every * step).sent for step in range(4)]

    assert sent == [2, 2, 1, 0]  # batches of SHOP_NOTIFY_BATCH_SIZE (2), one per interval
    assert len(smtp_server.received) == 5


def test_a_drop_notice_carries_rfc_8058_one_click_unsubscribe(app, upcoming, smtp_server):
    subscription = _confirmed(upcoming, "fan@example.com")
    notifications.notify_live_drops(AT_DROP)
    outbox.deliver(AT_DROP)

    [received] = smtp_server.received
    unsubscribe = f"{app.config['SHOP_BASE_URL']}/notify/{subscription.token}/unsubscribe"
    assert received.message["List-Unsubscribe"].strip() == f"<{unsubscribe}>"  # may be folded
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe in received.text and unsubscribe in received.html
    assert received.message["Subject"] == "The Spring Release is live"
    assert f"/drops/{upcoming.slug}" in received.text


def test_a_mail_clients_one_click_post_unsubscribes_without_a_form(app, client, upcoming):
    subscription = _confirmed(upcoming, "fan@example.com")

    answer = client.post(
        f"/notify/{subscription.token}/unsubscribe",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )

    assert answer.status_code == 200
    assert _subscriptions()[0].unsubscribed_at is not None


def test_opening_the_unsubscribe_link_only_asks(app, client, upcoming):
    subscription = _confirmed(upcoming, "fan@example.com")
    answer = client.get(f"/notify/{subscription.token}/unsubscribe")
    assert answer.status_code == 200 and "Stop these emails?" in _page(answer)
    assert _subscriptions()[0].unsubscribed_at is None


@pytest.mark.parametrize("token", ["x" * 32, "not a token", "A" * 200])
def test_a_made_up_unsubscribe_link_unsubscribes_nobody(app, client, upcoming, token):
    _confirmed(upcoming, "fan@example.com")
    answer = client.post(f"/notify/{token}/unsubscribe", data="List-Unsubscribe=One-Click")
    assert answer.status_code in (400, 404)
    assert _subscriptions()[0].unsubscribed_at is None


def test_one_subscribers_link_leaves_the_others_subscribed(app, client, upcoming):
    mine = _confirmed(upcoming, "me@example.com")
    _confirmed(upcoming, "you@example.com")

    client.post(f"/notify/{mine.token}/unsubscribe", data="List-Unsubscribe=One-Click")

    states = {s.email: s.unsubscribed_at is not None for s in _subscriptions()}
    assert states == {"me@example.com": True, "you@example.com": False}


def test_unsubscribing_stops_a_notice_that_was_waiting_for_its_batch(app, client, upcoming):
    app.config["SHOP_NOTIFY_BATCH_SIZE"] = 1
    _confirmed(upcoming, "first@example.com")
    later = _confirmed(upcoming, "later@example.com")
    notifications.notify_live_drops(AT_DROP)

    client.post(f"/notify/{later.token}/unsubscribe", data="List-Unsubscribe=One-Click")
    sent = outbox.deliver(AT_DROP + timedelta(hours=1)).sent

    assert sent == 1


def test_worker_once_writes_and_sends_the_notices(app, runner, upcoming, smtp_server):
    _confirmed(upcoming, "fan@example.com")
    upcoming = db.session.get(type(upcoming), upcoming.id)
    upcoming.opens_at = clock.now() - timedelta(minutes=1)
    db.session.commit()

    result = runner.invoke(args=["shop", "worker", "--once"])

    assert result.exit_code == 0, result.output
    assert "drop notices: 1 written" in result.output
    assert len(smtp_server.received) == 1

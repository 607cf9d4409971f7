"""The outbox against a real SMTP server (aiosmtpd): written with its cause, sent by the worker,
retried while the server is down, sent once, never from the request path."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from shop import clock, money, orders, outbox
from shop.extensions import db
from shop.models import Message
from shop.models.message import FAILED, PENDING, SENT
from testkit.factories import make_customer
from tests.support.smtp import free_port, hanging_smtp, running_smtp
from tests.support.stripe import (
    buy,
    held_order,
    live_batch,
    paid_order,
    session_id_from,
    stripe_settings,
)


@pytest.fixture
def app_overrides(emulator, smtp_server):
    return {**stripe_settings(emulator), "SMTP_URL": smtp_server.url}


def _messages() -> list[Message]:
    db.session.rollback()
    return list(db.session.scalars(select(Message).order_by(Message.id)))


def _paid(emulator, *, quantity: int = 2, edition_size: int = 5):
    batch = live_batch(edition_size=edition_size, limit=3)
    customer = make_customer(name="Ada Lovelace")
    db.session.commit()
    return paid_order(emulator, batch, customer, quantity)


def test_paying_an_order_writes_its_receipt_to_the_outbox_in_the_same_transaction(
    app, emulator, smtp_server
):
    order = _paid(emulator)

    [message] = _messages()
    assert (message.kind, message.state, message.order_id) == ("order_paid", PENDING, order.id)
    assert message.recipient == order.customer.email
    assert smtp_server.received == []  # written, not sent: only the worker sends


def test_an_order_fulfilled_twice_has_one_receipt(app, emulator):
    order = held_order(live_batch(edition_size=5), make_customer(), 1)
    emulator.complete(order.checkout_session_id)
    orders.fulfil(order.checkout_session_id, now=clock.now())
    orders.fulfil(order.checkout_session_id, now=clock.now())

    assert len(_messages()) == 1


def test_an_unpaid_order_writes_no_message(app, emulator):
    held_order(live_batch(edition_size=5), make_customer(), 1)
    assert _messages() == []


def test_the_worker_delivers_the_receipt_with_a_text_and_an_html_part(app, emulator, smtp_server):
    order = _paid(emulator, quantity=2, edition_size=5)

    delivery = outbox.deliver(clock.now())

    assert (delivery.sent, delivery.retrying, delivery.failed) == (1, 0, [])
    [received] = smtp_server.received
    assert received.envelope_to == [order.customer.email]
    assert received.message["To"] == order.customer.email
    assert "Small Batch" in received.message["From"]
    assert received.message["Subject"].startswith("Your order:")
    assert received.message["Message-ID"]
    assert "No. 1 of 5" in received.text and "No. 2 of 5" in received.text
    assert "No. 1" in received.html and "of 5" in received.html
    assert money.format_money(order.amount, order.currency) in received.text
    [message] = _messages()
    assert message.state == SENT and message.sent_at is not None and message.attempts == 1


def test_the_certificate_links_in_the_receipt_work_when_followed(
    app, emulator, smtp_server, client
):
    order = _paid(emulator, quantity=2)
    outbox.deliver(clock.now())

    [received] = smtp_server.received
    certificates = [link for link in received.links() if "/u/" in link]
    assert len(certificates) == 2
    for link in certificates:
        assert link.startswith(app.config["SHOP_BASE_URL"] + "/u/")
        page = client.get(link.removeprefix(app.config["SHOP_BASE_URL"]))
        assert page.status_code == 200
        assert order.batch.product.name in page.get_data(as_text=True)


def test_a_sent_message_is_never_sent_again(app, emulator, smtp_server):
    _paid(emulator)
    outbox.deliver(clock.now())
    later = outbox.deliver(clock.now() + timedelta(hours=2))

    assert later.sent == 0
    assert len(smtp_server.received) == 1


def test_a_message_waits_while_smtp_is_down_and_is_delivered_once_when_it_comes_back(app, emulator):
    port = free_port()
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{port}"  # nothing listens there yet
    _paid(emulator)
    now = clock.now()

    down = outbox.deliver(now)
    [message] = _messages()
    assert (down.sent, down.retrying) == (0, 1)
    assert message.state == PENDING and message.attempts == 1
    assert message.available_at == now + outbox.FIRST_RETRY
    assert "Error" in (message.last_error or "")

    with running_smtp(port) as server:
        too_soon = outbox.deliver(now + timedelta(seconds=30))
        back = outbox.deliver(now + timedelta(minutes=2))
        again = outbox.deliver(now + timedelta(minutes=10))
        received = server.received

    assert (too_soon.sent, back.sent, again.sent) == (0, 1, 0)
    assert len(received) == 1
    assert _messages()[0].state == SENT


def test_retries_back_off_and_the_message_fails_after_the_last_attempt(app, emulator):
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"
    app.config["SHOP_MAIL_MAX_ATTEMPTS"] = 3
    _paid(emulator)
    now = clock.now()

    waits = []
    for _ in range(3):
        report = outbox.deliver(now)
        message = _messages()[0]
        waits.append(message.available_at - now)
        now = message.available_at

    assert waits[:2] == [timedelta(minutes=1), timedelta(minutes=2)]
    assert message.state == FAILED and message.attempts == 3
    assert len(report.failed) == 1 and "order_paid" in report.failed[0]
    assert outbox.deliver(now + timedelta(days=1)).sent == 0  # failed stays failed


def test_a_recipient_the_server_refuses_fails_at_once(app, emulator, smtp_server):
    order = _paid(emulator)
    smtp_server.recorder.refuse.add(order.customer.email)

    report = outbox.deliver(clock.now())

    assert len(report.failed) == 1
    [message] = _messages()
    assert message.state == FAILED and "550" in (message.last_error or "")


def test_a_failed_message_retried_by_hand_is_sent(app, emulator, smtp_server):
    order = _paid(emulator)
    smtp_server.recorder.refuse.add(order.customer.email)
    outbox.deliver(clock.now())
    smtp_server.recorder.refuse.clear()

    assert outbox.retry(_messages()[0], actor=order.batch.product.maker, now=clock.now())
    db.session.commit()
    assert outbox.deliver(clock.now()).sent == 1
    assert len(smtp_server.received) == 1


def test_worker_once_sends_and_reports_what_it_did(app, emulator, smtp_server, runner):
    _paid(emulator)

    result = runner.invoke(args=["shop", "worker", "--once"])

    assert result.exit_code == 0, result.output
    assert "outbox: sent: 1" in result.output
    assert "sweep:" in result.output
    assert len(smtp_server.received) == 1


def test_worker_once_exits_with_failure_and_names_the_message_that_failed(
    app, emulator, smtp_server, runner
):
    email = _paid(emulator).customer.email
    smtp_server.recorder.refuse.add(email)

    result = runner.invoke(args=["shop", "worker", "--once"])

    assert result.exit_code == 1
    assert "order_paid" in result.output and email in result.output


def test_a_hanging_smtp_server_does_not_slow_a_buy(app, emulator, client):
    with hanging_smtp() as url:
        app.config["SMTP_URL"] = url
        app.config["SHOP_SMTP_TIMEOUT"] = 30.0
        batch = live_batch(edition_size=5, limit=2)
        customer = make_customer()
        db.session.commit()
        from tests.support.stripe import sign_in

        csrf = sign_in(client, customer)

        started = time.monotonic()
        to_stripe = buy(client, batch.id, 1, csrf=csrf)
        session_id = session_id_from(to_stripe.headers["Location"])
        emulator.complete(session_id)
        success = client.get(f"/checkout/success?session_id={session_id}")
        elapsed = time.monotonic() - started

        assert success.status_code == 200
        assert elapsed < 5.0  # SMTP would take 30 s to time out
        [message] = _messages()
        assert message.state == PENDING

        # The worker is the one that waits, and it gives up at its own timeout.
        app.config["SHOP_SMTP_TIMEOUT"] = 0.5
        worker = threading.Thread(target=_deliver_in_context, args=(app,))
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive()
        assert _messages()[0].attempts == 1


def _deliver_in_context(app) -> None:
    with app.app_context():
        outbox.deliver(clock.now())
        db.session.remove()

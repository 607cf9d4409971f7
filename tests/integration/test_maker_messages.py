"""The maker console shows the emails sent about an order and lets a maker retry failed ones."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from shop import clock, outbox
from shop.extensions import db
from shop.models import Message
from shop.models.message import FAILED, PENDING
from testkit.factories import make_customer, make_drop, make_maker
from tests.support.console import browser
from tests.support.stripe import live_batch, paid_order, stripe_settings


@pytest.fixture
def app_overrides(emulator, smtp_server):
    return {**stripe_settings(emulator), "SMTP_URL": smtp_server.url}


@pytest.fixture
def sold(app, emulator):
    """A maker's paid order whose receipt the mail server refused: (maker, order, message)."""
    maker = make_maker()
    drop = make_drop(maker, opens_at=clock.now().replace(year=2000), closes_at=None)
    order = paid_order(emulator, live_batch(drop=drop, edition_size=5), make_customer(), 1)
    message = db.session.scalar(select(Message).where(Message.order_id == order.id))
    message.state, message.attempts, message.last_error = FAILED, 8, "550 No such mailbox"
    db.session.commit()
    return maker, order, message


def _page(answer) -> str:
    return html.unescape(answer.get_data(as_text=True))


def test_an_orders_page_lists_the_emails_sent_about_it(app, sold):
    maker, order, _message = sold
    page = _page(browser(app, maker).get(f"/maker/orders/{order.public_id}"))
    assert "Emails to the customer" in page
    assert "Receipt" in page and "Failed" in page and "550 No such mailbox" in page


def test_failed_emails_are_listed_with_a_retry_button(app, sold):
    maker, order, _message = sold
    page = _page(browser(app, maker).get("/maker/messages"))
    assert "Failed emails" in page and "Retry" in page and order.public_id[:8] in page


def test_retrying_a_failed_email_queues_it_and_the_worker_sends_it(app, sold, smtp_server):
    maker, _order, message = sold
    console = browser(app, maker)

    answer = console.post(f"/maker/messages/{message.id}/retry", data={"csrf_token": console.csrf})

    assert answer.status_code == 303
    db.session.rollback()
    assert db.session.get(Message, message.id).state == PENDING
    assert outbox.deliver(clock.now()).sent == 1
    assert len(smtp_server.received) == 1


def test_another_maker_cannot_see_or_retry_the_email(app, sold):
    _maker, _order, message = sold
    stranger = browser(app, make_maker())
    db.session.commit()

    answer = stranger.post(
        f"/maker/messages/{message.id}/retry", data={"csrf_token": stranger.csrf}
    )

    assert answer.status_code == 404
    assert "No failed emails" in _page(stranger.get("/maker/messages"))
    db.session.rollback()
    assert db.session.get(Message, message.id).state == FAILED


def test_a_customer_cannot_retry_emails(app, sold):
    _maker, order, message = sold
    customer = browser(app, order.customer)
    answer = customer.post(
        f"/maker/messages/{message.id}/retry", data={"csrf_token": customer.csrf}
    )
    assert answer.status_code == 403

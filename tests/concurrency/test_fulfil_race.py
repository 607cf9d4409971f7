"""The success page and ten duplicate webhooks racing on one paid session, over real sockets,
against gunicorn (three worker processes with threads) and PostgreSQL: one paid order, serials
assigned once — or, when the units are gone, exactly one refund."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

import config as settings
from shop import clock, inventory, orders
from shop.extensions import db
from shop.models import Batch, Order, StripeEvent, Unit
from shop.models.order import EXPIRED, PAID, REFUNDED
from testkit import bursts, databases, factories, rawhttp
from tests.concurrency.conftest import assert_no_server_errors, violations
from tests.support.stripe import Emulator, held_order, live_batch, signature, stripe_settings

pytestmark = pytest.mark.concurrency

DUPLICATES = 10
WEBHOOK_SECRET = settings.EMULATOR_WEBHOOK_SECRET  # what shop_server is started with


@pytest.fixture(scope="module")
def stripe_handle(emulator) -> Emulator:
    """The package's emulator (the one ``shop_server`` talks to), with its control API."""
    return Emulator(emulator)


@pytest.fixture(scope="module")
def checkout_app(race_database_url, emulator):
    """The app on the race database, pointed at the same emulator (for seeding and checking)."""
    overrides = {**stripe_settings(emulator.url), "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    app = databases.make_app(race_database_url, **overrides)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _paid_session(app, stripe_handle, *, sold_out: bool) -> tuple[int, int, str, str]:
    """A customer's paid session for 2 units; with ``sold_out`` the hold was released and the
    batch sold to others before the payment landed. Returns (order, batch, session, email)."""
    with app.app_context():
        batch = live_batch(edition_size=4, limit=2)
        customer = factories.make_customer()
        order = held_order(batch, customer, 2)
        stripe_handle.complete(order.checkout_session_id)
        if sold_out:
            inventory.release(order, EXPIRED, now=clock.now())
            for _ in range(2):
                inventory.hold(batch.id, 2, customer=factories.make_customer(), now=clock.now())
            db.session.commit()
        seeded = (order.id, batch.id, order.checkout_session_id, customer.email)
        db.session.remove()
    return seeded


def _webhook_request(address: rawhttp.Address, event: dict) -> bytes:
    body = json.dumps(event)
    headers = [
        "POST /stripe/webhook HTTP/1.1",
        f"Host: {address[0]}:{address[1]}",
        "Connection: close",
        "Content-Type: application/json; charset=utf-8",
        f"Stripe-Signature: {signature(body, secret=WEBHOOK_SECRET)}",
        f"Content-Length: {len(body.encode())}",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body.encode()


@pytest.mark.parametrize("sold_out", [False, True], ids=["held", "released-and-sold-out"])
@pytest.mark.parametrize("repetition", range(3))
def test_the_success_page_and_ten_duplicate_webhooks_settle_a_session_once(
    shop_server, checkout_app, stripe_handle, sold_out, repetition
):
    order_id, batch_id, session_id, email = _paid_session(
        checkout_app, stripe_handle, sold_out=sold_out
    )
    event = stripe_handle.event("checkout.session.completed", session_id)
    customer = rawhttp.login(shop_server.address, email)
    success = rawhttp.build_request(
        shop_server.address,
        "GET",
        f"/checkout/success?session_id={session_id}",
        cookies=customer.cookies,
    )
    webhooks = [_webhook_request(shop_server.address, event) for _ in range(DUPLICATES)]

    burst = bursts.burst(shop_server.address, [success, *webhooks])

    assert_no_server_errors(burst.responses, shop_server)
    assert burst.statuses() == [200] * (DUPLICATES + 1)
    outcomes = [json.loads(r.text)["outcome"] for r in burst.responses[1:]]
    with checkout_app.app_context():
        order = db.session.get(Order, order_id)
        units = db.session.scalars(select(Unit.serial).where(Unit.order_id == order_id)).all()
        recorded = db.session.scalar(
            select(func.count()).select_from(StripeEvent).where(StripeEvent.id == event["id"])
        )
        batch = db.session.get(Batch, batch_id)
        state, refund_id, sold, held = order.state, order.refund_id, batch.sold, batch.held
        db.session.remove()
    assert violations(checkout_app, batch_id) == []
    assert recorded == 1
    assert outcomes.count(orders.FULFILLED) <= 1 and outcomes.count(orders.REFUNDED_NOW) <= 1
    refunds = stripe_handle.refunds(stripe_handle.session(session_id)["payment_intent"])
    if sold_out:
        assert state == REFUNDED and units == [] and refund_id is not None
        assert (sold, held) == (0, 4) and len(refunds) == 1
        assert orders.SOLD_OUT_REASON in burst.responses[0].text
    else:
        assert state == PAID and sorted(units) == [1, 2] and (sold, held) == (2, 0)
        assert refunds == []
        assert "Paid — No.&nbsp;1 and No.&nbsp;2 of 4" in burst.responses[0].text

"""Refunds of one paid order racing each other over real sockets, against gunicorn (several
worker processes with threads), PostgreSQL and the Stripe emulator: the maker's tabs refund
units and the whole order at once, and every unit is refunded once — never more money than
was paid, never a unit in two refunds, never a 5xx."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from shop import clock, orders
from shop.extensions import db
from shop.models import Order, Unit, UnitRefund
from shop.models.order import PAID, REFUNDED
from testkit import bursts, databases, factories, rawhttp
from tests.concurrency.conftest import assert_no_server_errors
from tests.support.stripe import Emulator, held_order, live_batch, stripe_settings

pytestmark = pytest.mark.concurrency

TABS = 4  # per kind of refund in one burst


@pytest.fixture(scope="module")
def stripe_handle(emulator) -> Emulator:
    return Emulator(emulator)


@pytest.fixture(scope="module")
def refund_app(race_database_url, emulator):
    app = databases.make_app(race_database_url, **stripe_settings(emulator.url))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _paid_order(app, stripe_handle) -> tuple[str, str, str, int]:
    """A maker's order of three units ($95.00 each), paid through Checkout: (maker email,
    order public id, payment intent, order id)."""
    with app.app_context():
        maker = factories.make_maker()
        drop = factories.make_drop(maker, opens_at=clock.now().replace(year=2020), closes_at=None)
        batch = live_batch(drop=drop, edition_size=10, limit=3, price=9500)
        order = held_order(batch, factories.make_customer(), 3)
        stripe_handle.complete(order.checkout_session_id)
        orders.fulfil(order.checkout_session_id, now=clock.now())
        order = db.session.get(Order, order.id, populate_existing=True)
        assert order.state == PAID
        seeded = (maker.email, order.public_id, order.payment_intent_id, order.id)
        db.session.remove()
    return seeded


def _tabs(server, email: str, public_id: str, count: int) -> list[rawhttp.ShopSession]:
    page = f"/maker/orders/{public_id}/refund"
    return [rawhttp.login(server.address, email, page=page) for _ in range(count)]


def _refund_request(tab: rawhttp.ShopSession, public_id: str, **fields: object) -> bytes:
    return tab.form_request(f"/maker/orders/{public_id}/refund", {"confirm": "y", **fields})


def _stored(app, order_id: int):
    with app.app_context():
        order = db.session.get(Order, order_id)
        retired = {
            unit.serial: unit.unit_refund_id
            for unit in db.session.scalars(select(Unit).where(Unit.order_id == order_id))
            if unit.refunded_at is not None
        }
        unit_refunds = list(
            db.session.scalars(select(UnitRefund).where(UnitRefund.order_id == order_id))
        )
        found = (order.state, retired, [(r.amount, r.refund_id) for r in unit_refunds])
        db.session.remove()
    return found


@pytest.mark.parametrize("repetition", range(3))
def test_tabs_refunding_two_units_at_once_refund_each_exactly_once(
    shop_server, refund_app, stripe_handle, repetition
):
    email, public_id, intent, order_id = _paid_order(refund_app, stripe_handle)
    tabs = _tabs(shop_server, email, public_id, 2 * TABS)
    requests = [
        _refund_request(tab, public_id, scope="units", serials=[1 + n % 2])
        for n, tab in enumerate(tabs)
    ]

    result = bursts.burst(shop_server.address, requests)

    assert_no_server_errors(result.responses, shop_server)
    assert result.count(303) == 2, result.statuses()
    assert result.count(409) == 2 * TABS - 2, result.statuses()
    state, retired, unit_refunds = _stored(refund_app, order_id)
    assert state == PAID
    assert sorted(retired) == [1, 2] and len(set(retired.values())) == 2
    stripe_refunds = stripe_handle.refunds(intent)
    assert sorted(r["amount"] for r in stripe_refunds) == [9500, 9500]
    assert sorted(r[1] for r in unit_refunds) == sorted(r["id"] for r in stripe_refunds)


@pytest.mark.parametrize("repetition", range(3))
def test_unit_refunds_racing_a_whole_order_refund_never_refund_more_than_was_paid(
    shop_server, refund_app, stripe_handle, repetition
):
    email, public_id, intent, order_id = _paid_order(refund_app, stripe_handle)
    tabs = _tabs(shop_server, email, public_id, 2 * TABS)
    requests = [
        _refund_request(tab, public_id, scope="units", serials=[3])
        if n % 2
        else _refund_request(tab, public_id, scope="order")
        for n, tab in enumerate(tabs)
    ]

    result = bursts.burst(shop_server.address, requests)

    assert_no_server_errors(result.responses, shop_server)
    state, retired, unit_refunds = _stored(refund_app, order_id)
    stripe_refunds = stripe_handle.refunds(intent)
    assert sum(r["amount"] for r in stripe_refunds) <= 3 * 9500
    assert len(unit_refunds) <= 1  # unit No. 3 is refunded at most once
    if state == REFUNDED:
        # the whole order went through: everything paid came back, once
        assert sum(r["amount"] for r in stripe_refunds) == 3 * 9500
    else:  # only the unit: the order refund was refused while it was being claimed
        assert retired.keys() == {3}
        assert [r["amount"] for r in stripe_refunds] == [9500]
    assert result.count(303) in (1, 2), result.statuses()

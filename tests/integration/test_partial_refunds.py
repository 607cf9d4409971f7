"""Refunding some units of an order (issue 19, item 6), on SQLite and PostgreSQL, through the
console and the real Stripe emulator: those serials are retired (their certificates say so),
the rest stay valid, and each unit is refunded once however the form is submitted.

The order here: three bottles of rye at $95.00, paid through Checkout (serials 1, 2 and 3).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from shop import clock, orders, refunds, sweeper
from shop.errors import InvalidInput, InvalidState
from shop.extensions import db
from shop.models import AuditEntry, Batch, Message, Order, Unit, UnitRefund
from shop.models.order import PAID, REFUNDED
from testkit.factories import make_batch, make_customer, make_drop, make_maker, make_product
from tests.support.console import browser
from tests.support.stripe import buy, session_id_from, sign_in, stripe_settings


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


@pytest.fixture
def paid(app, client, emulator):
    """(maker, order) — three bottles paid for real through Checkout."""
    maker = make_maker(name="Ada Marsh")
    drop = make_drop(maker, opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    rye = make_batch(make_product(maker, name="Rye"), drop, edition_size=10, price=9500, limit=4)
    customer = make_customer()
    db.session.commit()
    csrf = sign_in(client, customer)
    session_id = session_id_from(buy(client, rye.id, 3, csrf=csrf).headers["Location"])
    emulator.complete(session_id)
    orders.fulfil(session_id, now=clock.now())
    db.session.expire_all()
    order = db.session.scalar(select(Order))
    assert order.state == PAID and [u.serial for u in order.units] == [1, 2, 3]
    return maker, order


def _refund(console, order, **fields):
    return console.form(
        f"/maker/orders/{order.public_id}/refund", {"confirm": "y", "scope": "units", **fields}
    )


def _retired(order) -> list[int]:
    db.session.expire_all()
    return [
        unit.serial
        for unit in db.session.scalars(
            select(Unit).where(Unit.order_id == order.id).order_by(Unit.serial)
        )
        if unit.refunded_at is not None
    ]


def test_refunding_two_units_refunds_their_price_retires_them_and_keeps_the_third(
    app, emulator, paid
):
    maker, order = paid
    console = browser(app, maker)

    answer = _refund(console, order, serials=["1", "3"], reason="Two arrived broken.")

    assert answer.status_code == 303
    [refund] = emulator.refunds(order.payment_intent_id)
    assert refund["amount"] == 2 * 9500
    assert _retired(order) == [1, 3]
    order = db.session.get(Order, order.id)
    assert order.state == PAID
    [unit_refund] = order.unit_refunds
    assert (unit_refund.amount, unit_refund.refund_id) == (19000, refund["id"])
    assert unit_refund.reason == "Two arrived broken."
    assert [u.serial for u in order.valid_units] == [2]
    batch = db.session.get(Batch, order.batch_id)
    assert batch.sold == 3  # serials are never reissued
    page = console.get(f"/maker/orders/{order.public_id}").get_data(as_text=True)
    assert "Refunded $190.00 for No. 1, No. 3" in page
    assert page.count("pill--refunded") == 2


def test_the_customer_is_told_which_numbers_were_retired_and_which_stay(app, emulator, paid):
    maker, order = paid

    _refund(browser(app, maker), order, serials=["2"])

    message = db.session.scalar(select(Message).where(Message.kind == "units_refunded"))
    assert message.recipient == order.customer.email
    assert "$95.00" in message.text_body
    assert "Refunded and retired: No. 2 of 10" in message.text_body
    assert "Still yours: No. 1, No. 3" in message.text_body


def test_a_retired_units_certificate_says_it_was_refunded_and_the_others_stay_genuine(
    app, client, emulator, paid
):
    maker, order = paid
    codes = {unit.serial: unit.certificate_code for unit in order.units}

    _refund(browser(app, maker), order, serials=["2"])

    retired = client.get(f"/u/{codes[2]}")
    assert retired.status_code == 410
    assert "No. 2 of 10 was refunded" in retired.get_data(as_text=True)
    assert client.get(f"/u/{codes[2]}/qr.svg").status_code == 404
    assert client.get(f"/u/{codes[1]}").status_code == 200
    assert client.get(f"/u/{codes[3]}/qr.svg").status_code == 200


def test_the_customers_order_page_lists_only_valid_certificates(app, client, emulator, paid):
    maker, order = paid
    codes = {unit.serial: unit.certificate_code for unit in order.units}

    _refund(browser(app, maker), order, serials=["3"])
    page = client.get(f"/account/orders/{order.public_id}").get_data(as_text=True)

    assert codes[1] in page and codes[2] in page and codes[3] not in page
    assert "Refunded and retired: No. 3 of 10" in page


def test_the_same_unit_cannot_be_refunded_twice(app, emulator, paid):
    maker, order = paid
    console, second_tab = browser(app, maker), browser(app, maker)

    first = _refund(console, order, serials=["1"])
    second = _refund(second_tab, order, serials=["1"])

    assert first.status_code == 303
    assert second.status_code == 409
    assert "No. 1 was already refunded" in second.get_data(as_text=True)
    assert len(emulator.refunds(order.payment_intent_id)) == 1
    assert _retired(order) == [1]


@pytest.mark.parametrize(
    ("serials", "status", "message"),
    [
        (["7"], 422, "This order has no unit No. 7"),
        (["1", "2", "3"], 422, "refund the whole order instead"),
        ([], 422, "Choose the units to refund."),
    ],
    ids=["a serial of another order", "every unit", "none chosen"],
)
def test_bad_unit_choices_are_refused_with_a_reason_and_change_nothing(
    app, emulator, paid, serials, status, message
):
    maker, order = paid

    answer = _refund(browser(app, maker), order, serials=serials)

    assert answer.status_code == status
    assert message in answer.get_data(as_text=True)
    assert emulator.refunds(order.payment_intent_id) == []
    assert _retired(order) == []
    assert db.session.scalar(select(func.count()).select_from(UnitRefund)) == 0


def test_another_makers_refund_of_my_units_is_a_404(app, emulator, paid):
    _, order = paid

    answer = _refund(browser(app, make_maker()), order, serials=["1"])

    assert answer.status_code == 404
    assert _retired(order) == [] and emulator.refunds(order.payment_intent_id) == []


def test_after_a_unit_refund_the_whole_order_refund_returns_only_the_rest(app, emulator, paid):
    maker, order = paid
    console = browser(app, maker)
    _refund(console, order, serials=["1"])

    rest = console.form(
        f"/maker/orders/{order.public_id}/refund", {"confirm": "y", "scope": "order"}
    )

    assert rest.status_code == 303
    amounts = sorted(r["amount"] for r in emulator.refunds(order.payment_intent_id))
    assert amounts == [9500, 2 * 9500]
    db.session.expire_all()
    order = db.session.get(Order, order.id)
    assert order.state == REFUNDED and order.valid_units == []


def test_a_unit_refund_stripe_has_not_confirmed_is_retried_by_the_sweeper_once(app, emulator, paid):
    maker, order = paid
    emulator.faults(fail_next=5, fail_status=500, paths=["/v1/refunds"])

    answer = _refund(browser(app, maker), order, serials=["2"])

    assert answer.status_code == 303
    emulator.faults()
    assert _retired(order) == [2]
    assert emulator.refunds(order.payment_intent_id) == []
    with pytest.raises(InvalidState, match="still waiting for Stripe"):
        refunds.refund_order(order, actor=maker, now=clock.now())
    later = clock.now() + refunds.REFUND_RETRY_AFTER + timedelta(seconds=1)
    sweeper.sweep(later)
    sweeper.sweep(later)

    [refund] = emulator.refunds(order.payment_intent_id)
    assert refund["amount"] == 9500
    db.session.expire_all()
    assert db.session.scalar(select(UnitRefund)).refund_id == refund["id"]


def test_a_unit_refund_stripe_refuses_gives_the_units_back(app, emulator, paid):
    maker, order = paid
    # Refunded in full from the Dashboard: nothing is left for the units' refund.
    emulator.client().v1.refunds.create(params={"payment_intent": order.payment_intent_id})

    answer = _refund(browser(app, maker), order, serials=["2"])

    assert answer.status_code >= 400
    assert "The units are still the customer" in answer.get_data(as_text=True)
    assert _retired(order) == []
    assert db.session.scalar(select(func.count()).select_from(UnitRefund)) == 0
    kinds = set(db.session.scalars(select(AuditEntry.action)))
    assert {"order.units_refunded", "order.units_refund_failed"} <= kinds


def test_the_service_refuses_units_of_an_order_that_is_not_paid(app, emulator, paid):
    maker, order = paid
    refunds.refund_order(order, actor=maker, now=clock.now())

    with pytest.raises(InvalidState):
        refunds.refund_units(order, [1], actor=maker, now=clock.now())
    with pytest.raises(InvalidInput):
        refunds.refund_units(db.session.get(Order, order.id), [], actor=maker, now=clock.now())


def test_the_refund_form_can_start_from_one_unit(app, emulator, paid):
    maker, order = paid

    page = browser(app, maker).get(f"/maker/orders/{order.public_id}/refund?unit=2")

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'value="2" checked' in html and 'value="1" checked' not in html

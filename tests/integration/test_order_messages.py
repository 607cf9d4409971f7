"""Receipts, shipping notices and refund notices: written with their cause, once per order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from shop import clock, messages, outbox, refunds, shipping
from shop.extensions import db
from shop.models import Message
from testkit.factories import make_customer, make_drop, make_maker
from tests.support.stripe import live_batch, paid_order, stripe_settings, unconfirmed_refund


@pytest.fixture
def app_overrides(emulator, smtp_server):
    return {**stripe_settings(emulator), "SMTP_URL": smtp_server.url}


def _kinds(order_id: int) -> list[str]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(Message.kind).where(Message.order_id == order_id).order_by(Message.id)
        )
    )


def test_a_maker_refund_tells_the_customer_the_amount_reason_and_what_happens_to_the_numbers(
    app, emulator, smtp_server
):
    maker = make_maker()
    order = paid_order(emulator, live_batch(edition_size=9), make_customer(), 2)
    serials = [unit.serial for unit in order.units]

    refunds.refund_order(order, actor=maker, now=clock.now(), reason="A cracked bottle.")
    outbox.deliver(clock.now())

    assert _kinds(order.id) == ["order_paid", "order_refunded"]
    refund = smtp_server.received[-1]
    assert refund.message["Subject"].startswith("Refunded:")
    assert "A cracked bottle." in refund.text
    assert all(f"No. {serial}" in refund.text for serial in serials)
    assert "never sold to anyone else" in refund.text


def test_a_refund_is_announced_once_stripe_confirms_it_and_only_once(app, emulator):
    order, now = unconfirmed_refund(app, emulator)
    before_stripe_confirms = _kinds(order.id)
    refunds.retry_refunds(now + timedelta(minutes=2))
    refunds.retry_refunds(now + timedelta(minutes=3))

    assert before_stripe_confirms == ["order_paid"]
    assert _kinds(order.id) == ["order_paid", "order_refunded"]


def test_tracking_links_are_made_for_known_carriers_only():
    assert messages.tracking_url("UPS", "1Z 999") == "https://www.ups.com/track?tracknum=1Z%20999"
    assert messages.tracking_url("Royal  Mail", "AB1") is not None
    assert messages.tracking_url("Bob's Couriers", "123") is None
    assert messages.tracking_url("UPS", None) is None


def test_marking_an_order_shipped_tells_the_customer_once_with_the_tracking_link(
    app, emulator, smtp_server
):
    maker = make_maker()
    drop = make_drop(maker, opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    order = paid_order(emulator, live_batch(drop=drop, edition_size=9), make_customer(), 1)

    shipping.mark_shipped(
        order, carrier="UPS", tracking_number="1Z999", actor=maker, now=clock.now()
    )
    db.session.commit()
    shipping.mark_shipped(
        order, carrier="UPS", tracking_number="1Z998", actor=maker, now=clock.now()
    )
    db.session.commit()
    outbox.deliver(clock.now())

    assert _kinds(order.id) == ["order_paid", "order_shipped"]
    shipped = smtp_server.received[-1]
    assert shipped.message["Subject"].startswith("On its way:")
    assert "https://www.ups.com/track?tracknum=1Z999" in shipped.text


def test_a_receipt_names_what_the_card_was_charged_with_shipping_tax_and_discount(
    app, emulator, smtp_server
):
    order = paid_order(emulator, live_batch(edition_size=9, price=4000), make_customer(), 2)
    db.session.execute(delete(Message))
    order.shipping_rate_name, order.shipping_amount = "Standard shipping", 900
    order.tax_amount, order.discount_amount, order.promotion_code = 650, 1000, "SPRING"
    order.amount_total = 8000 + 900 + 650 - 1000
    messages.order_paid(order)
    db.session.commit()
    outbox.deliver(clock.now())

    text = smtp_server.received[-1].text
    for line in ("Standard shipping: $9.00", "Tax: $6.50", "Discount (SPRING): -$10.00"):
        assert line in text
    assert "Paid: $85.50" in text

"""Orders in the console: live numbers, the list and its filters, shipping, refunds through the
real Stripe emulator, and a spreadsheet-safe CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from shop import clock, exports, inventory, orders
from shop.extensions import db
from shop.models import AuditEntry, Order
from shop.models.order import PAID, REFUNDED
from testkit.factories import make_batch, make_customer, make_drop, make_maker, make_product
from tests.support.console import browser
from tests.support.stripe import buy, session_id_from, sign_in, stripe_settings

ADDRESS = {
    "name": "Sam Rivera",
    "address": {
        "line1": "1 Orchard Lane",
        "line2": None,
        "city": "Hudson",
        "postal_code": "12534",
        "state": "NY",
        "country": "US",
    },
}


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


@pytest.fixture
def shop(app):
    """A maker with a drop open by the real clock: two batches (rye 10 @ $95, brandy 5 @ $72)."""
    maker = make_maker(name="Ada Marsh")
    drop = make_drop(maker, opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    rye = make_batch(make_product(maker, name="Rye"), drop, edition_size=10, price=9500, limit=4)
    brandy = make_batch(make_product(maker, name="Brandy"), drop, edition_size=5, price=7200)
    db.session.commit()
    return maker, drop, rye, brandy


def _paid(batch, quantity=1, *, email=None, shipping=ADDRESS, minutes_ago=10):
    customer = make_customer(email=email)
    at = clock.now() - timedelta(minutes=minutes_ago)
    order = inventory.hold(batch.id, quantity, customer=customer, now=at)
    inventory.confirm(
        order,
        now=at + timedelta(minutes=1),
        payment_intent_id=f"pi_{order.public_id}",
        customer_email=customer.email,
        shipping=shipping,
    )
    db.session.commit()
    return order


def _held(batch, quantity=1, *, expires_in=timedelta(minutes=1)):
    order = inventory.hold(batch.id, quantity, customer=make_customer(), now=clock.now())
    order.hold_expires_at = clock.now() + expires_in
    db.session.commit()
    return order


# --- live numbers ---------------------------------------------------------------------------


def test_the_live_numbers_count_sold_held_left_and_paid_revenue_only(app, shop):
    maker, drop, rye, brandy = shop
    _paid(rye, 2)
    _paid(brandy, 1)
    refunded = _paid(rye, 1)
    refunded.state = REFUNDED
    _held(rye, 3)
    db.session.commit()
    console = browser(app, maker)

    data = console.get(f"/maker/drops/{drop.id}/live.json").json

    assert data["phase"] == "live"
    assert data["units"] == {"sold": 4, "held": 3, "left": 8}
    assert data["revenue"] == [{"currency": "usd", "amount": 26200, "formatted": "$262.00"}]
    assert {b["id"]: (b["sold"], b["held"], b["left"]) for b in data["batches"]} == {
        rye.id: (3, 3, 4),
        brandy.id: (1, 0, 4),
    }
    assert data["paid_orders"] == 2 and data["holds"] == 1
    assert data["open_seconds"] >= 3600 and data["sold_out_seconds"] is None
    assert "$262.00" in data["html"] and "expires in" in data["html"]


def test_the_live_page_works_without_javascript(app, shop):
    maker, drop, rye, _ = shop
    order = _paid(rye, 2)
    _held(rye, 1, expires_in=timedelta(seconds=50))
    console = browser(app, maker)

    html = console.get(f"/maker/drops/{drop.id}/live").get_data(as_text=True)

    assert "Live sales" in html and "$190.00" in html
    assert f"#{order.units[0].serial}, #{order.units[1].serial}" in html
    assert "feed__item--soon" in html  # a hold about to expire stands out
    assert "http-equiv" not in html


def test_the_time_to_sell_out_is_shown_once_everything_is_paid(app, shop):
    maker, drop, rye, brandy = shop
    _paid(rye, 4, minutes_ago=30)
    _paid(rye, 4, minutes_ago=20)
    _paid(rye, 2, minutes_ago=10)
    for _ in range(5):
        _paid(brandy, 1, minutes_ago=15)
    console = browser(app, maker)

    data = console.get(f"/maker/drops/{drop.id}/live.json").json

    assert data["units"]["left"] == 0
    assert 45 * 60 <= data["sold_out_seconds"] <= 52 * 60  # opened 60 min ago, last paid at -9
    assert "Sold out in" in data["html"]


def test_the_storefront_and_the_maker_agree_how_fast_a_batch_sold_out(app, shop, client):
    """One rule ("sold out in": opening → payment of the last unit, refunded units included)
    behind both pages; the last paid order being refunded must not change either answer."""
    maker, drop, rye, _ = shop
    _paid(rye, 4, minutes_ago=30)
    _paid(rye, 4, minutes_ago=20)
    last = _paid(rye, 2, minutes_ago=12)  # paid 11 minutes ago: 49 min after the opening
    last.state = REFUNDED
    db.session.commit()

    customer_page = client.get(f"/drops/{drop.slug}").get_data(as_text=True)
    maker_page = browser(app, maker).get(f"/maker/drops/{drop.id}/live").get_data(as_text=True)

    storefront = re.findall(r"<strong>Sold out</strong>\s*in ([^<]+?)\s*<", customer_page)
    console = re.findall(r"Sold out in ([^<]+)</span>", maker_page)
    assert storefront == console == ["49 min"]


# --- list, filters, detail ------------------------------------------------------------------


def test_orders_filter_by_drop_batch_state_and_email(app, shop):
    maker, drop, rye, brandy = shop
    a = _paid(rye, 1, email="alice@example.com")
    b = _paid(brandy, 1, email="bob@example.com")
    held = _held(rye)
    other_drop = make_drop(maker, opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    c = _paid(make_batch(rye.product, other_drop, number=2), 1, email="carol@example.com")
    console = browser(app, maker)

    def listed(**args) -> set[str]:
        html = console.get("/maker/orders", query_string=args).get_data(as_text=True)
        return {o.public_id for o in (a, b, c, held) if o.public_id[:8] in html}

    assert listed() == {a.public_id, b.public_id, c.public_id, held.public_id}
    assert listed(drop=drop.id) == {a.public_id, b.public_id, held.public_id}
    assert listed(batch=brandy.id) == {b.public_id}
    assert listed(state="held") == {held.public_id}
    assert listed(state="to_ship") == {a.public_id, b.public_id, c.public_id}
    assert listed(q="ALICE@") == {a.public_id}
    assert listed(q="%") == set()  # a LIKE wildcard is just a character
    assert listed(state="nonsense", drop="x") == listed()  # unknown filters are ignored


def test_the_order_page_shows_units_customer_address_and_payment_reference(app, shop):
    maker, _, rye, _ = shop
    order = _paid(rye, 2, email="sam@example.com")
    console = browser(app, maker)

    html = console.get(f"/maker/orders/{order.public_id}").get_data(as_text=True)

    assert "No. 1" in html and "No. 2" in html and "of 10" in html
    assert "sam@example.com" in html
    assert "Sam Rivera<br>1 Orchard Lane<br>12534 Hudson<br>NY<br>US" in html
    assert order.payment_intent_id in html


def test_marking_an_order_shipped_records_carrier_tracking_and_who(app, shop):
    maker, drop, rye, _ = shop
    order = _paid(rye)
    console = browser(app, maker)

    missing = console.form(f"/maker/orders/{order.public_id}/ship", {"tracking_number": "1Z"})
    shipped = console.form(
        f"/maker/orders/{order.public_id}/ship", {"carrier": "UPS", "tracking_number": "1Z999"}
    )

    assert missing.status_code == 422 and shipped.status_code == 303
    order = db.session.get(Order, order.id)
    assert (order.carrier, order.tracking_number) == ("UPS", "1Z999") and order.shipped_at
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "order.shipped"))
    assert entry.actor_id == maker.id and entry.drop_id == drop.id and entry.order_id == order.id
    assert "Marked an order shipped" in console.get(f"/maker/drops/{drop.id}").get_data(
        as_text=True
    )


def test_a_refunded_order_cannot_be_marked_shipped(app, shop):
    maker, _, rye, _ = shop
    order = _paid(rye)
    order.state = REFUNDED
    db.session.commit()
    console = browser(app, maker)

    response = console.form(f"/maker/orders/{order.public_id}/ship", {"carrier": "UPS"})

    assert response.status_code == 409
    assert "was refunded" in response.get_data(as_text=True)
    assert db.session.get(Order, order.id).shipped_at is None


# --- refunds through Stripe (the emulator) ---------------------------------------------------


@pytest.fixture
def stripe_paid_order(app, client, emulator, shop):
    """An order paid for real: the customer buys through Checkout and the session completes."""
    maker, drop, rye, _ = shop
    customer = make_customer()
    db.session.commit()
    csrf = sign_in(client, customer)
    location = buy(client, rye.id, 2, csrf=csrf).headers["Location"]
    session_id = session_id_from(location)
    emulator.complete(session_id)
    orders.fulfil(session_id, now=clock.now())
    db.session.expire_all()
    order = db.session.scalar(select(Order))
    assert order.state == PAID and order.payment_intent_id
    return maker, drop, order


def test_a_refund_needs_confirmation(app, emulator, stripe_paid_order):
    maker, _, order = stripe_paid_order
    console = browser(app, maker)

    response = console.form(f"/maker/orders/{order.public_id}/refund", {})

    assert response.status_code == 422
    assert "Tick the box to confirm the refund." in response.get_data(as_text=True)
    assert db.session.get(Order, order.id).state == PAID
    assert emulator.refunds(order.payment_intent_id) == []


def test_a_double_submitted_refund_refunds_once_and_says_so_the_second_time(
    app, emulator, stripe_paid_order
):
    maker, drop, order = stripe_paid_order
    console = browser(app, maker)
    second_tab = browser(app, maker)

    first = console.form(f"/maker/orders/{order.public_id}/refund", {"confirm": "y"})
    second = second_tab.form(f"/maker/orders/{order.public_id}/refund", {"confirm": "y"})

    assert first.status_code == 303
    assert second.status_code == 409
    assert "already been refunded" in second.get_data(as_text=True)
    [refund] = emulator.refunds(order.payment_intent_id)
    assert refund["amount"] == order.amount
    order = db.session.get(Order, order.id)
    assert order.state == REFUNDED and order.refund_id == refund["id"]
    page = console.get(f"/maker/drops/{drop.id}").get_data(as_text=True)
    assert "Refunded an order" in page
    assert "Already refunded" in console.get(f"/maker/orders/{order.public_id}/refund").get_data(
        as_text=True
    )


def test_a_refund_stripe_does_not_confirm_yet_is_recorded_and_the_maker_is_told(
    app, emulator, stripe_paid_order
):
    maker, _, order = stripe_paid_order
    console = browser(app, maker)
    emulator.faults(fail_next=5, fail_status=500, paths=["/v1/refunds"])

    response = console.form(f"/maker/orders/{order.public_id}/refund", {"confirm": "y"})

    assert response.status_code == 303
    page = console.get(f"/maker/orders/{order.public_id}").get_data(as_text=True)
    assert "retried automatically" in page
    assert db.session.get(Order, order.id).state == REFUNDED


# --- CSV ------------------------------------------------------------------------------------


def _rows(response) -> list[dict]:
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


def test_the_csv_export_lists_the_filtered_orders_with_serials(app, shop):
    maker, _, rye, brandy = shop
    first = _paid(rye, 2, email="alice@example.com")
    _paid(brandy, 1, email="bob@example.com")
    console = browser(app, maker)

    response = console.get("/maker/orders.csv", query_string={"batch": rye.id})

    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="orders-')
    [row] = _rows(response)
    # Ids are random: one starting with "-" is written quoted, like any formula-like cell.
    assert row["order"] == exports.spreadsheet_safe(first.public_id) and row["serials"] == "1 2"
    assert row["amount"] == "190.00" and row["unit price"] == "95.00" and row["currency"] == "USD"
    assert row["customer email"] == "alice@example.com" and row["ship to"] == "Sam Rivera"
    assert row["address"] == "1 Orchard Lane, 12534 Hudson, NY, US"
    assert row["payment reference"] == first.payment_intent_id


HOSTILE = ['=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]


def test_cells_that_a_spreadsheet_would_run_as_formulas_are_made_text(app, shop):
    maker, _, rye, _ = shop
    for hostile in HOSTILE:
        _paid(rye, 1, shipping={"name": hostile, "address": {"line1": hostile, "city": "X"}})
    console = browser(app, maker)

    rows = _rows(console.get("/maker/orders.csv"))

    assert sorted(row["ship to"] for row in rows) == sorted("'" + h for h in HOSTILE)
    assert all(row["address"] == row["ship to"] + ", X" for row in rows)
    assert all(row["serials"][0].isdigit() for row in rows)  # safe cells are left alone

"""Buying through the views against the real emulator: hold → Stripe Checkout → back."""

import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import event, func, select, text

from shop import clock, drops, inventory, refunds
from shop.extensions import db
from shop.models import Drop, Order
from shop.models.order import CANCELLED, HELD, PAID
from shop.payments import gateway
from testkit.factories import make_customer, make_drop
from tests.support.stripe import (
    buy,
    deliver,
    held_and_sold,
    hold,
    live_batch,
    session_id_from,
    sign_in,
    stripe_settings,
)
from tests.support.wire import recorded_statements, statements_sent


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


def _orders() -> list[Order]:
    db.session.rollback()  # a fresh snapshot: requests commit in sessions of their own
    return list(db.session.scalars(select(Order).order_by(Order.id)))


def test_buying_holds_units_and_sends_the_customer_to_a_session_built_from_the_order(
    app, client, emulator, shopper
):
    customer, batch, csrf = shopper
    response = buy(client, batch.id, 2, csrf=csrf)

    assert response.status_code == 303
    [order] = _orders()
    assert order.state == HELD and order.quantity == 2 and held_and_sold(batch.id) == (2, 0)
    session = emulator.session(order.checkout_session_id)
    assert response.headers["Location"] == session["url"]
    assert session["status"] == "open" and session["mode"] == "payment"
    assert session["amount_total"] == 8400 and session["currency"] == "usd"
    assert session["client_reference_id"] == order.public_id
    assert session["metadata"] == {"order": order.public_id}
    assert session["customer_email"] == customer.email
    assert session["payment_method_types"] == ["card"]
    assert session["shipping_address_collection"]["allowed_countries"][:2] == ["US", "CA"]
    assert (
        session["success_url"]
        == "http://shop.test/checkout/success?session_id={CHECKOUT_SESSION_ID}"
    )
    assert session["cancel_url"] == f"http://shop.test/checkout/orders/{order.public_id}/cancel"
    assert session["expires_at"] == int((order.hold_expires_at + timedelta(minutes=31)).timestamp())
    [line] = emulator.get(f"/checkout/sessions/{session['id']}/line_items")["data"]
    assert line["quantity"] == 2 and line["price"]["unit_amount"] == 4200
    assert line["description"] == f"{batch.product.name} — Batch No. {batch.number}"


def test_the_buy_request_holds_the_units_and_leaves_stripe_to_the_next_request(
    app, client, emulator, shopper
):
    _customer, batch, csrf = shopper
    response = hold(client, batch.id, 2, csrf=csrf)

    assert response.status_code == 303
    [order] = _orders()
    assert response.headers["Location"] == f"/checkout/orders/{order.public_id}/pay"
    assert order.state == HELD and order.checkout_session_id is None
    assert held_and_sold(batch.id) == (2, 0)
    assert emulator.get("/checkout/sessions")["data"] == []  # Stripe not asked yet

    onward = client.get(response.headers["Location"])
    assert onward.status_code == 303
    [order] = _orders()
    assert onward.headers["Location"] == emulator.session(order.checkout_session_id)["url"]


def test_a_buy_is_one_statement_that_commits_itself_on_postgresql(app, client, shopper):
    """The request a flash crowd sends: no user, batch or drop read before the hold, nothing
    after it, and no BEGIN or COMMIT round trip (none while the batch row is locked). SQLite
    runs the hold's steps one by one inside BEGIN IMMEDIATE instead."""
    _customer, batch, csrf = shopper
    batch_id = batch.id
    db.session.remove()
    if db.engine.dialect.name != "postgresql":
        with recorded_statements(db.engine) as statements:
            assert hold(client, batch_id, 1, csrf=csrf).status_code == 303
        # buyer, terms, drop and holder, allot, held by the account, stock, order (a client on
        # a loopback address is on no network the caps count)
        assert len(statements) == 7
        return

    with statements_sent(db.engine) as sent:
        response = hold(client, batch_id, 1, csrf=csrf)

    assert response.status_code == 303
    [statement] = sent
    for part in (
        "FROM users",
        "FROM batches b WHERE b.id = $",
        "FOR UPDATE",
        "FOR SHARE OF d",
        "INSERT INTO allotments",
        "INSERT INTO held_by_account",
        "INSERT INTO held_by_network",
        "UPDATE batches",
        "INSERT INTO orders",
    ):
        assert part in statement
    [order] = _orders()
    assert order.state == HELD and held_and_sold(batch_id) == (1, 0)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("refusal", ["sold out", "limit reached"])
def test_a_refusal_never_waits_for_the_batch_or_drop_row(app, client, shopper, refusal):
    """The crowd that arrives after the last unit went (or a customer pressing buy again at
    their limit) is refused from the hold statement's own snapshot, so no refusal queues behind
    a transaction that has the batch row or the drop row locked (another buyer's hold, a payment
    being confirmed, a maker closing the drop). SQLite serialises every write anyway."""
    customer, batch, csrf = shopper
    batch_id, drop_id = batch.id, batch.drop_id
    if refusal == "sold out":  # the whole edition of 5, held by others
        for quantity in (2, 2, 1):
            inventory.hold(batch_id, quantity, customer=make_customer(), now=clock.now())
        expected, stock = "Sold out", (5, 0)
    else:  # this customer holds the limit of 2 already
        inventory.hold(batch_id, 2, customer=customer, now=clock.now())
        expected, stock = "the most this batch allows per customer", (2, 0)
    db.session.commit()

    with db.engine.connect() as locker, ThreadPoolExecutor(1) as pool:
        locker.execute(text("SELECT 1 FROM batches WHERE id = :id FOR UPDATE"), {"id": batch_id})
        locker.execute(text("SELECT 1 FROM drops WHERE id = :id FOR UPDATE"), {"id": drop_id})
        answer = pool.submit(hold, client, batch_id, 1, csrf=csrf)
        try:
            response = answer.result(timeout=10)  # a waiting refusal would wait for ever
        finally:
            locker.rollback()

    assert response.status_code == 409
    assert expected in response.get_data(as_text=True)
    assert held_and_sold(batch_id) == stock


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_buy_that_waited_for_a_closing_drop_is_refused_once_the_close_commits(
    app, client, shopper
):
    """A buy held up on the batch row while the maker closes the drop is refused once the close
    commits: after the batch row the hold share-locks the drop's row, which hands it the closed
    drop, not the open one its statement began with."""
    _customer, batch, csrf = shopper
    batch_id, drop_id = batch.id, batch.drop_id
    db.session.commit()
    # The maker's close, as drops.close_drop runs it, in a transaction that took the batch row
    # a moment before (so the buy is sure to wait for it).
    db.session.execute(
        text("SELECT 1 FROM batches WHERE drop_id = :id FOR UPDATE"), {"id": drop_id}
    )
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(hold, client, batch_id, 1, csrf=csrf)
        time.sleep(0.5)
        waiting = not answer.done()  # the buy waits for the batch row
        drops.close_drop(db.session.get_one(Drop, drop_id), actor=None, now=clock.now())
        db.session.commit()
        response = answer.result(timeout=10)

    assert waiting
    assert response.status_code == 409
    assert "not open" in response.get_data(as_text=True).lower()
    assert held_and_sold(batch_id) == (0, 0)


def test_refused_buys_give_their_connection_back_to_the_pool_intact(app, client, shopper):
    """A refusal (a domain error inside the hold's own-connection block) must not cost a new
    database connection: a crowd arriving after the sell-out would reconnect on every request."""
    _customer, batch, csrf = shopper
    batch_id = batch.id
    assert hold(client, batch_id, 2, csrf=csrf).status_code == 303
    assert hold(client, batch_id, 1, csrf=csrf).status_code == 409  # the limit of 2: refused
    connects = []

    def count(*_args) -> None:
        connects.append(1)

    event.listen(db.engine, "connect", count)
    try:
        for _ in range(5):
            assert hold(client, batch_id, 1, csrf=csrf).status_code == 409
    finally:
        event.remove(db.engine, "connect", count)
    assert connects == []


def test_a_customer_buys_through_the_hosted_page_and_sees_their_numbers(
    app, client, emulator, shopper
):
    customer, batch, csrf = shopper
    hosted_url = buy(client, batch.id, 2, csrf=csrf).headers["Location"]

    paid = requests.post(
        hosted_url,
        data={
            "email": customer.email,
            "card_number": "4242 4242 4242 4242",
            "expiry": "12 / 34",
            "cvc": "123",
            "name": "Ada Lovelace",
            "line1": "1 Main St",
            "city": "Springfield",
            "postal_code": "12345",
            "state": "IL",
            "country": "US",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert paid.status_code == 303
    success = paid.headers["Location"]
    assert success.startswith("http://shop.test/checkout/success?session_id=cs_test_")

    page = client.get(success.removeprefix("http://shop.test"))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Paid — No.&nbsp;1 and No.&nbsp;2 of 5" in html
    [order] = _orders()
    assert order.state == PAID and [u.serial for u in order.units] == [1, 2]
    for unit in order.units:
        assert f"/u/{unit.certificate_code}" in html
    assert order.customer_email == customer.email
    assert order.shipping["address"]["city"] == "Springfield"
    intent = emulator.get(f"/payment_intents/{order.payment_intent_id}")
    assert intent["metadata"] == {"order": order.public_id}
    assert held_and_sold(batch.id) == (0, 2)

    # The webhook arriving afterwards changes nothing.
    event = emulator.event("checkout.session.completed", order.checkout_session_id)
    assert deliver(client, event).json["outcome"] == "already_paid"
    assert held_and_sold(batch.id) == (0, 2)


@pytest.mark.parametrize(
    "form",
    [
        {"quantity": "0"},
        {"quantity": "-1"},
        {"quantity": "1.5"},
        {"quantity": "1e3"},
        {"quantity": ""},
        {"quantity": " 1"},
        {"quantity": "3"},  # over the per-customer limit of 2
        {"quantity": "99999999999999999999"},
        {},
        {"quantity": ["1", "1"]},
    ],
)
def test_a_quantity_that_is_not_a_whole_number_within_the_limit_holds_nothing(
    app, client, emulator, shopper, form
):
    _customer, batch, csrf = shopper
    response = client.post(f"/checkout/batches/{batch.id}", data={**form, "csrf_token": csrf})

    assert response.status_code == 422
    assert "Choose a quantity between 1 and 2." in response.get_data(as_text=True)
    assert _orders() == [] and held_and_sold(batch.id) == (0, 0)


def test_json_callers_get_the_error_as_json(app, client, emulator, shopper):
    _customer, batch, csrf = shopper
    response = buy(client, batch.id, "1.5", csrf=csrf, Accept="application/json")
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_quantity"


def test_fewer_left_than_asked_for_re_renders_the_drop_page_with_the_reason(
    app, client, emulator, shopper
):
    _customer, batch, csrf = shopper
    for _ in range(2):  # four units of five go to others
        inventory.hold(batch.id, 2, customer=make_customer(), now=clock.now())
        db.session.commit()

    response = buy(client, batch.id, 2, csrf=csrf)

    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "Only 1 left" in html and batch.drop.title in html
    assert held_and_sold(batch.id) == (4, 0)


def test_a_drop_that_is_not_live_takes_no_hold(app, client, emulator):
    drop = make_drop(opens_at=clock.now() + timedelta(hours=1), closes_at=None)
    batch = live_batch(drop=drop)
    customer = make_customer()
    db.session.commit()
    response = buy(client, batch.id, 1, csrf=sign_in(client, customer))
    assert response.status_code == 409
    assert "not open for buying" in response.get_data(as_text=True)
    assert _orders() == []


def test_buying_needs_a_csrf_token(app, client, emulator, shopper):
    _customer, batch, _csrf = shopper
    response = client.post(f"/checkout/batches/{batch.id}", data={"quantity": "1"})
    assert response.status_code == 400
    assert _orders() == []


def test_an_anonymous_buyer_is_sent_to_log_in_and_nothing_is_held(app, client, emulator):
    batch = live_batch()
    db.session.commit()
    login_page = client.get("/account/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login_page).group(1)

    response = buy(client, batch.id, 1, csrf=csrf)

    assert response.status_code == 303
    assert response.headers["Location"].startswith("/account/login?next=")
    assert _orders() == []


def test_stripe_refusing_the_session_releases_the_hold_at_once(app, client, emulator, shopper):
    _customer, batch, csrf = shopper
    emulator.advance(3600)  # "Stripe" now finds our expires_at too soon: a definite 400

    response = buy(client, batch.id, 2, csrf=csrf)

    assert response.status_code == 502
    assert "refused this checkout" in response.get_data(as_text=True)
    [order] = _orders()
    assert order.state == CANCELLED and held_and_sold(batch.id) == (0, 0)


def test_a_stripe_outage_keeps_the_hold_and_a_retry_gets_one_session(
    app, client, emulator, shopper
):
    _customer, batch, csrf = shopper
    emulator.faults(fail_next=3, fail_status=500, paths=["/v1/checkout/sessions"])  # + 2 retries

    response = buy(client, batch.id, 1, csrf=csrf)

    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "still held" in page and "Continue to payment" in page  # the order page, to retry
    [order] = _orders()
    assert order.state == HELD and order.checkout_session_id is None
    retry = client.post(f"/checkout/orders/{order.public_id}/pay", data={"csrf_token": csrf})
    again = client.post(f"/checkout/orders/{order.public_id}/pay", data={"csrf_token": csrf})
    assert retry.status_code == again.status_code == 303
    assert retry.headers["Location"] == again.headers["Location"]
    assert len(emulator.get("/checkout/sessions")["data"]) == 1
    assert held_and_sold(batch.id) == (1, 0)


def test_a_timeout_keeps_the_hold_and_the_retry_returns_the_session_stripe_made(
    app, client, emulator, shopper
):
    _customer, batch, csrf = shopper
    app.config.update(STRIPE_READ_TIMEOUT=0.3, STRIPE_MAX_NETWORK_RETRIES=0)
    gateway.close(app)  # rebuilt with the short timeout
    emulator.faults(timeout_next=1, hang_seconds=0.6, paths=["/v1/checkout/sessions"])

    response = buy(client, batch.id, 1, csrf=csrf)

    assert response.status_code == 503
    [order] = _orders()
    assert order.state == HELD and order.checkout_session_id is None
    deadline = time.monotonic() + 5
    while not emulator.get("/checkout/sessions")["data"] and time.monotonic() < deadline:
        time.sleep(0.05)  # the slow request still completes at "Stripe"
    [made] = emulator.get("/checkout/sessions")["data"]
    retry = client.post(f"/checkout/orders/{order.public_id}/pay", data={"csrf_token": csrf})
    assert retry.status_code == 303 and session_id_from(retry.headers["Location"]) == made["id"]
    assert len(emulator.get("/checkout/sessions")["data"]) == 1


def test_continuing_after_the_session_expired_starts_a_new_attempt(app, client, emulator, shopper):
    _customer, batch, csrf = shopper
    first = session_id_from(buy(client, batch.id, 1, csrf=csrf).headers["Location"])
    emulator.expire(first)  # e.g. expired at Stripe while the hold still runs
    [order] = _orders()

    retry = client.post(f"/checkout/orders/{order.public_id}/pay", data={"csrf_token": csrf})

    second = session_id_from(retry.headers["Location"])
    assert second != first
    [order] = _orders()
    assert order.checkout_attempt == 1 and order.checkout_session_id == second
    assert order.state == HELD and held_and_sold(batch.id) == (1, 0)


def test_continuing_a_paid_order_goes_to_the_success_page(app, client, emulator, shopper):
    _customer, batch, csrf = shopper
    session_id = session_id_from(buy(client, batch.id, 1, csrf=csrf).headers["Location"])
    emulator.complete(session_id)
    [order] = _orders()
    retry = client.post(f"/checkout/orders/{order.public_id}/pay", data={"csrf_token": csrf})
    assert retry.headers["Location"] == f"http://shop.test/checkout/success?session_id={session_id}"


def test_the_success_page_says_processing_until_the_payment_is_confirmed(
    app, client, emulator, shopper
):
    _customer, batch, csrf = shopper
    session_id = session_id_from(buy(client, batch.id, 1, csrf=csrf).headers["Location"])
    page = client.get(f"/checkout/success?session_id={session_id}")
    assert page.status_code == 200
    assert "Processing your payment" in page.get_data(as_text=True)
    assert _orders()[0].state == HELD


RELOADS = 10


def test_the_return_page_of_a_paid_order_answers_from_the_database_without_asking_stripe(
    app, client, emulator, shopper
):
    _customer, batch, csrf = shopper
    session_id = session_id_from(buy(client, batch.id, 2, csrf=csrf).headers["Location"])
    emulator.complete(session_id)
    event = emulator.event("checkout.session.completed", session_id)
    assert deliver(client, event).json["outcome"] == "paid"  # the webhook was first
    asked = len(emulator.api_calls())

    pages = [client.get(f"/checkout/success?session_id={session_id}") for _ in range(RELOADS)]

    assert len(emulator.api_calls()) == asked
    for page in pages:
        assert page.status_code == 200
        assert "Paid — No.&nbsp;1 and No.&nbsp;2 of 5" in page.get_data(as_text=True)


def test_a_paid_order_asks_stripe_on_its_first_return_only(app, client, emulator, shopper):
    _customer, batch, csrf = shopper
    session_id = session_id_from(buy(client, batch.id, 1, csrf=csrf).headers["Location"])
    emulator.complete(session_id)  # no webhook yet: the first return settles the order
    asked = len(emulator.api_calls())

    first = client.get(f"/checkout/success?session_id={session_id}")
    after_first = emulator.api_calls()[asked:]
    reloads = [client.get(f"/checkout/success?session_id={session_id}") for _ in range(RELOADS)]

    assert after_first == [("GET", f"/v1/checkout/sessions/{session_id}")]
    assert len(emulator.api_calls()) == asked + 1
    for page in [first, *reloads]:
        assert "Paid — No.&nbsp;1 of 5" in page.get_data(as_text=True)
    assert _orders()[0].state == PAID


def test_the_return_page_of_a_refunded_order_does_not_ask_stripe(app, client, emulator, shopper):
    _customer, batch, csrf = shopper
    session_id = session_id_from(buy(client, batch.id, 1, csrf=csrf).headers["Location"])
    emulator.complete(session_id)
    client.get(f"/checkout/success?session_id={session_id}")
    [order] = _orders()
    refunds.refund_order(order, actor=None, now=clock.now(), reason="The bottle broke.")
    asked = len(emulator.api_calls())

    pages = [client.get(f"/checkout/success?session_id={session_id}") for _ in range(RELOADS)]

    assert len(emulator.api_calls()) == asked
    assert all("The bottle broke." in page.get_data(as_text=True) for page in pages)


def test_continuing_to_pay_for_a_paid_order_does_not_ask_stripe(app, client, emulator, shopper):
    _customer, batch, csrf = shopper
    session_id = session_id_from(buy(client, batch.id, 1, csrf=csrf).headers["Location"])
    emulator.complete(session_id)
    client.get(f"/checkout/success?session_id={session_id}")
    [order] = _orders()
    asked = len(emulator.api_calls())

    for _ in range(RELOADS):
        page = client.get(f"/checkout/orders/{order.public_id}/pay")
        assert "no longer waiting for payment" in page.get_data(as_text=True)

    assert len(emulator.api_calls()) == asked


def test_cancelling_expires_the_session_and_releases_the_units(app, client, emulator, shopper):
    _customer, batch, csrf = shopper
    session_id = session_id_from(buy(client, batch.id, 2, csrf=csrf).headers["Location"])
    [order] = _orders()
    confirm = client.get(f"/checkout/orders/{order.public_id}/cancel")
    assert confirm.status_code == 200 and "Release my hold" in confirm.get_data(as_text=True)

    done = client.post(f"/checkout/orders/{order.public_id}/cancel", data={"csrf_token": csrf})

    assert done.status_code == 303 and done.headers["Location"].endswith(batch.drop.slug)
    assert emulator.session(session_id)["status"] == "expired"
    assert _orders()[0].state == CANCELLED and held_and_sold(batch.id) == (0, 0)


def test_cancelling_a_session_that_was_just_paid_honours_the_sale(app, client, emulator, shopper):
    _customer, batch, csrf = shopper
    session_id = session_id_from(buy(client, batch.id, 1, csrf=csrf).headers["Location"])
    emulator.complete(session_id)
    [order] = _orders()

    done = client.post(f"/checkout/orders/{order.public_id}/cancel", data={"csrf_token": csrf})

    assert done.status_code == 303 and "/checkout/success" in done.headers["Location"]
    assert _orders()[0].state == PAID and held_and_sold(batch.id) == (0, 1)


def test_another_customer_cannot_see_pay_or_cancel_an_order(app, client, emulator, shopper):
    _customer, batch, csrf = shopper
    session_id = session_id_from(buy(client, batch.id, 1, csrf=csrf).headers["Location"])
    [order] = _orders()
    stranger = make_customer()
    db.session.commit()
    stranger_csrf = sign_in(client, stranger)

    assert client.get(f"/checkout/success?session_id={session_id}").status_code == 404
    assert client.get(f"/checkout/orders/{order.public_id}/cancel").status_code == 404
    cancel = f"/checkout/orders/{order.public_id}/cancel"
    assert client.post(cancel, data={"csrf_token": stranger_csrf}).status_code == 404
    pay = f"/checkout/orders/{order.public_id}/pay"
    assert client.post(pay, data={"csrf_token": stranger_csrf}).status_code == 404
    assert client.get("/checkout/success?session_id=not-a-session").status_code == 404
    assert _orders()[0].state == HELD
    assert db.session.scalar(select(func.count()).select_from(Order)) == 1


def test_releasing_a_hold_reads_the_order_its_batch_and_drop_once(app, client, emulator, shopper):
    """The back button's release: the order, its batch and drop for the way back, the release
    itself — not the product, images, units or maker an order page shows, and nothing read
    again after the release commits."""
    _customer, batch, csrf = shopper
    buy(client, batch.id, 2, csrf=csrf)
    [order] = _orders()
    public_id, slug = order.public_id, batch.drop.slug
    db.session.remove()

    with recorded_statements(db.engine) as statements:
        done = client.post(f"/checkout/orders/{public_id}/cancel", data={"csrf_token": csrf})

    assert done.status_code == 303 and done.headers["Location"].endswith(slug)
    reads = [" ".join(s.split()) for s in statements if s.lstrip().startswith("SELECT")]
    tables = [re.search(r" FROM (\w+)", s).group(1) for s in reads]
    assert tables.count("orders") == 2  # the customer's own, then again after Stripe's answer
    assert tables.count("batches") == 1 and tables.count("drops") <= 2  # +1: the page cache's
    assert not {"products", "batch_images", "units"} & set(tables)
    assert tables.count("users") == 1  # who is signed in, before the view

"""Buying under attack: tampered quantities and prices, extra form fields, a spoofed Host in the
Stripe return URLs, other people's orders, and the buy button's rate limits."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import Allotment, Batch, Order
from shop.models.order import HELD
from testkit.factories import make_customer
from tests.security.helpers import form_token, log_in, log_out
from tests.support.stripe import (
    buy,
    held_order,
    hold,
    paid_order,
    stripe_settings,
)

BASE_URL = "http://shop.test"  # SHOP_BASE_URL in TestingConfig


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


def _orders() -> list[Order]:
    db.session.expire_all()
    return list(db.session.scalars(select(Order).order_by(Order.id)))


def _stock(batch_id: int) -> tuple[int, int]:
    db.session.expire_all()
    batch = db.session.get(Batch, batch_id)
    return batch.held, batch.sold


@pytest.mark.parametrize(
    "quantity",
    ["0", "-1", "3", "1e1", "2.5", "", "abc", "\uff11", " 1", "0x1", "99999999999999999999", "1;2"],
)
def test_a_tampered_quantity_is_refused_and_holds_nothing(client, shopper, quantity):
    _, batch, csrf = shopper
    response = buy(client, batch.id, quantity, csrf=csrf)
    assert response.status_code == 422
    assert _orders() == [] and _stock(batch.id) == (0, 0)


def test_two_quantity_fields_are_refused(client, shopper):
    _, batch, csrf = shopper
    response = client.post(
        f"/checkout/batches/{batch.id}",
        data={"quantity": ["1", "2"], "csrf_token": csrf},
    )
    assert response.status_code == 422
    assert _orders() == []


def test_price_and_ownership_fields_in_the_buy_form_are_ignored(client, emulator, shopper):
    customer, batch, csrf = shopper
    other = make_customer()
    db.session.commit()
    response = client.post(
        f"/checkout/batches/{batch.id}",
        data={
            "quantity": "2",
            "csrf_token": csrf,
            "price": "1",
            "unit_price": "1",
            "amount": "1",
            "currency": "jpy",
            "customer_id": str(other.id),
            "batch_id": "999",
            "state": "paid",
        },
    )
    assert response.status_code == 303
    assert client.get(response.headers["Location"]).status_code == 303  # on to Stripe
    [order] = _orders()
    assert (order.unit_price, order.amount, order.currency) == (4200, 8400, "usd")
    assert order.customer_id == customer.id and order.batch_id == batch.id
    assert order.state == HELD
    session = emulator.session(order.checkout_session_id)
    assert (session["amount_total"], session["currency"]) == (8400, "usd")


@pytest.mark.parametrize(
    ("base_url", "headers"),
    [
        ("http://localhost", {}),
        ("http://127.0.0.1", {"X-Forwarded-Host": "evil.example"}),
        ("http://shop.test", {"X-Forwarded-Host": "evil.example", "Forwarded": "host=evil"}),
    ],
)
def test_stripe_return_urls_come_from_shop_base_url_never_the_host_header(
    app, client, emulator, shopper, base_url, headers
):
    _, batch, csrf = shopper
    session = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    client.set_cookie(session.key, session.value, domain=urlsplit(base_url).hostname)
    response = client.post(
        f"/checkout/batches/{batch.id}",
        base_url=base_url,
        data={"quantity": "1", "csrf_token": csrf},
        headers=headers,
    )
    assert response.status_code == 303
    onward = client.get(response.headers["Location"], base_url=base_url, headers=headers)
    assert onward.status_code == 303
    [order] = _orders()
    session = emulator.session(order.checkout_session_id)
    for url in (session["success_url"], session["cancel_url"]):
        assert url.startswith(f"{BASE_URL}/checkout/"), url
        assert "evil" not in url and "localhost" not in url and "127.0.0.1" not in url


@pytest.fixture
def intruder(app):
    """Another customer, logged in on a client of their own."""
    browser = app.test_client()
    user = make_customer()
    db.session.commit()
    assert log_in(browser, user.email).status_code == 303
    return browser


def test_a_customer_cannot_see_pay_for_or_cancel_another_customers_order(
    app, client, shopper, intruder
):
    owner, batch, _ = shopper
    order = held_order(batch, owner)
    token = form_token(intruder, "/account/")
    for method, path in (
        ("GET", f"/account/orders/{order.public_id}"),
        ("GET", f"/checkout/orders/{order.public_id}/cancel"),
        ("POST", f"/checkout/orders/{order.public_id}/cancel"),
        ("POST", f"/checkout/orders/{order.public_id}/pay"),
        ("GET", f"/checkout/orders/{order.public_id}/pay"),
        ("GET", f"/checkout/success?session_id={order.checkout_session_id}"),
    ):
        response = intruder.open(path, method=method, data={"csrf_token": token})
        assert response.status_code == 404, (method, path, response.status_code)
        assert order.public_id not in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Order, order.id).state == HELD


def test_another_customers_order_looks_exactly_like_a_missing_one(app, client, shopper, intruder):
    owner, batch, _ = shopper
    order = held_order(batch, owner)
    theirs = intruder.get(f"/account/orders/{order.public_id}")
    missing = intruder.get("/account/orders/AAAAAAAAAAAAAAAAAAAAAA")
    assert theirs.status_code == missing.status_code == 404
    assert _without_volatile(theirs) == _without_volatile(missing)


def _without_volatile(response) -> str:
    """The page minus what differs on every request (the clock, the request id, and the CSRF
    token's signature, which carries the second it was made)."""
    body = response.get_data(as_text=True).replace(response.headers["X-Request-Id"], "")
    body = re.sub(r'(name="csrf_token" value=")[^"]*"', r'\1"', body)
    return re.sub(r'data-now="[^"]*"', "", body)


def test_a_certificate_shows_the_owners_first_name_only(app, client, emulator, shopper):
    owner, batch, _ = shopper
    owner.display_name = "Ada Lovelace-Byron"
    order = paid_order(emulator, batch, owner)
    code = order.units[0].certificate_code
    visitor = app.test_client()
    page = visitor.get(f"/u/{code}").get_data(as_text=True)
    assert "Ada" in page
    assert "Lovelace" not in page and owner.email not in page
    assert order.public_id not in page
    other = code[:-1] + ("y" if code.endswith("x") else "x")
    assert visitor.get(f"/u/{other}").status_code == 404


def test_certificate_codes_and_order_ids_are_unguessable(app, emulator, shopper):
    owner, batch, _ = shopper
    order = paid_order(emulator, batch, owner, quantity=2)
    codes = [unit.certificate_code for unit in order.units]
    for value in [order.public_id, *codes]:
        assert len(value) >= 16 and not value.isdigit()
    assert len(set(codes)) == 2


def test_buying_with_an_unknown_or_huge_batch_id_is_a_404(client, shopper):
    _, _, csrf = shopper
    for batch_id in (999999, 2**31, 2**63):
        response = buy(client, batch_id, 1, csrf=csrf)
        assert response.status_code == 404
    assert db.session.scalar(select(func.count(Order.id))) == 0


def test_a_certificates_address_and_qr_code_come_from_shop_base_url(app, emulator, shopper):
    owner, batch, _ = shopper
    code = paid_order(emulator, batch, owner).units[0].certificate_code
    visitor = app.test_client()
    qr_codes = set()
    for base_url in ("http://localhost", "http://127.0.0.1", BASE_URL):
        page = visitor.get(f"/u/{code}", base_url=base_url).get_data(as_text=True)
        assert f'<link rel="canonical" href="{BASE_URL}/u/{code}?p=' in page  # the signed link
        assert "//localhost" not in page and "//127.0.0.1" not in page
        qr_codes.add(visitor.get(f"/u/{code}/qr.svg", base_url=base_url).get_data())
    assert len(qr_codes) == 1  # the same code whichever Host the request named


def test_a_session_ended_elsewhere_cannot_buy_although_the_buy_reads_no_user_row(
    app, client, shopper
):
    """The buy request skips loading the user (the hold statement checks the session token
    itself): a copy of the session from before a logout must still be refused."""
    customer, batch, _ = shopper
    phone = app.test_client()
    log_in(phone, customer.email)
    phone_token = form_token(phone, "/account/")
    assert log_out(client).status_code == 303  # rotates the token: every session ends

    response = hold(phone, batch.id, 1, csrf=phone_token)

    assert response.status_code == 303
    assert response.headers["Location"].startswith("/account/login")
    assert _orders() == [] and _stock(batch.id) == (0, 0)
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Allotment)) == 0

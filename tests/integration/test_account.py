"""A customer's own pages: overview, orders, one order, password change."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shop import clock, inventory
from shop.extensions import db
from shop.models import Order
from shop.models.order import EXPIRED, REFUNDED
from testkit.factories import PASSWORD, make_batch, make_customer, make_drop
from tests.support.clients import fresh_client, log_in

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
NEW = "a much better secret"


def csrf(client, path: str) -> str:
    return _CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def log_in_with_form(client, email: str, password: str = PASSWORD):
    return client.post(
        "/account/login",
        data={"email": email, "password": password, "csrf_token": csrf(client, "/account/login")},
    )


def password_form(current: str = PASSWORD, new: str = NEW, confirm: str = NEW) -> dict:
    return {"current_password": current, "new_password": new, "confirm_password": confirm}


def live_batch(**kwargs):
    now = clock.now()
    drop = make_drop(opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=1))
    return make_batch(drop=drop, **kwargs)


def paid_order(batch, customer, quantity=2) -> Order:
    order = inventory.hold(batch.id, quantity, customer=customer, now=clock.now())
    inventory.confirm(order, now=clock.now(), customer_email=customer.email)
    return order


@pytest.mark.parametrize(
    "path", ["/account/", "/account/orders", "/account/orders/abc", "/account/password"]
)
def test_account_pages_send_visitors_to_log_in_first(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/login?next=")


def test_my_orders_shows_each_orders_state_and_what_to_do_next(client):
    customer = make_customer()
    held = inventory.hold(
        live_batch(edition_size=10, price=7200).id, 1, customer=customer, now=clock.now()
    )
    paid = paid_order(live_batch(edition_size=10, number=7), customer, 2)
    refunded = paid_order(live_batch(edition_size=5), customer, 1)
    refunded.state = REFUNDED
    refunded.refunded_at = clock.now()
    refunded.refund_reason = "The last bottle was sold while your payment was on its way."
    expired = inventory.hold(live_batch().id, 1, customer=customer, now=clock.now())
    inventory.release(expired, EXPIRED, now=clock.now())
    db.session.commit()
    log_in(client, customer)

    html = client.get("/account/orders").get_data(as_text=True)

    assert "Awaiting payment" in html and "1 unit is held for you" in html
    assert f'data-countdown="{held.hold_expires_at.isoformat().replace("+00:00", "Z")}"' in html
    assert f'action="/checkout/orders/{held.public_id}/pay"' in html
    assert "Continue to payment" in html
    units = paid.units
    assert re.search(
        rf'<a href="/u/{units[0].certificate_code}"[^>]*>No\. 1</a> and '
        rf'<a href="/u/{units[1].certificate_code}"[^>]*>No\. 2</a> of 10',
        html,
    )
    assert "Refunded" in html and "The last bottle was sold while your payment" in html
    assert "Hold ran out" in html and "Nothing was charged" in html
    assert html.count('class="order-row ') == 4


def test_a_customer_sees_only_their_own_orders(client):
    customer, other = make_customer(), make_customer()
    paid_order(live_batch(), other, 1)
    db.session.commit()
    log_in(client, customer)

    html = client.get("/account/orders").get_data(as_text=True)

    assert "No orders yet" in html


def test_a_customer_cannot_see_another_customers_order(client):
    customer, other = make_customer(), make_customer()
    theirs = paid_order(live_batch(), other, 1)
    db.session.commit()
    log_in(client, customer)

    response = client.get(f"/account/orders/{theirs.public_id}")

    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert other.email not in html and theirs.units[0].certificate_code not in html


@pytest.mark.parametrize("public_id", ["nope", "x" * 300, "%00", "..%2F..%2Fetc"])
def test_unknown_order_ids_are_404(client, public_id):
    customer = make_customer()
    db.session.commit()
    log_in(client, customer)
    assert client.get(f"/account/orders/{public_id}").status_code == 404


def test_an_order_page_lists_its_certificates(client):
    customer = make_customer()
    order = paid_order(live_batch(edition_size=240, number=7), customer, 2)
    db.session.commit()
    log_in(client, customer)

    response = client.get(f"/account/orders/{order.public_id}")
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "Batch No. 7" in html and "Paid" in html
    for unit in order.units:
        assert f'href="/u/{unit.certificate_code}"' in html
    assert order.public_id in html


def test_the_overview_shows_the_collection_and_holds_awaiting_payment(client):
    customer = make_customer(name="Sam Rivera")
    paid_order(live_batch(edition_size=48), customer, 2)
    inventory.hold(live_batch().id, 1, customer=customer, now=clock.now())
    db.session.commit()
    log_in(client, customer)

    html = client.get("/account/").get_data(as_text=True)

    assert "Hello, Sam" in html
    assert "Waiting for your payment" in html
    assert html.count('class="collection__item"') == 2
    assert "of 48" in html
    assert 'href="/account/password"' in html


def test_changing_the_password_keeps_this_session_and_ends_every_other(client, app):
    customer = make_customer()
    db.session.commit()
    elsewhere = fresh_client(app)
    assert log_in_with_form(elsewhere, customer.email).status_code == 303
    assert log_in_with_form(client, customer.email).status_code == 303

    response = client.post(
        "/account/password",
        data={**password_form(), "csrf_token": csrf(client, "/account/password")},
    )

    assert response.status_code == 303
    assert client.get("/account/").status_code == 200  # still logged in here
    assert elsewhere.get("/account/").status_code == 302  # logged out everywhere else
    fresh = fresh_client(app)
    assert log_in_with_form(fresh, customer.email, PASSWORD).status_code == 401
    assert log_in_with_form(fresh, customer.email, NEW).status_code == 303


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("wrong password!", NEW, NEW, "not right"),
        (PASSWORD, NEW, "a different secret", "The two don"),
        (PASSWORD, "short", "short", "8 to 128 characters"),
    ],
)
def test_a_bad_password_change_changes_nothing(
    client, app, customer, current, new, confirm, message
):
    log_in(client, customer)
    before = customer.password_hash

    response = client.post(
        "/account/password",
        data={
            **password_form(current, new, confirm),
            "csrf_token": csrf(client, "/account/password"),
        },
    )

    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    db.session.expire_all()
    assert customer.password_hash == before
    assert client.get("/account/").status_code == 200


def test_a_password_change_without_the_csrf_token_is_refused(client, customer):
    log_in(client, customer)
    before = customer.password_hash

    response = client.post("/account/password", data=password_form())

    assert response.status_code in (400, 422)
    db.session.expire_all()
    assert customer.password_hash == before

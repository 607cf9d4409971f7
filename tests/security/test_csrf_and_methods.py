"""CSRF on every state-changing request; state never changes on GET."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from flask import session
from flask_wtf.csrf import validate_csrf
from wtforms import ValidationError

from shop import inventory, security
from shop.extensions import db
from shop.models import Drop, Order, User
from shop.models.drop import SCHEDULED
from shop.models.order import HELD, PAID
from testkit.factories import (
    AT_DROP,
    make_batch,
    make_customer,
    make_drop,
    make_maker,
    make_product,
)
from tests.security.helpers import form_token, is_logged_in, log_in

CSRF_EXEMPT = {"payments.webhook"}  # Stripe can't send our token; it signs instead


def _post_rules(app):
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods and rule.endpoint not in CSRF_EXEMPT:
            yield rule


def _example_path(rule) -> str:
    return rule.build(dict.fromkeys(rule.arguments, 1), append_unknown=False)[1]


def test_every_post_route_refuses_a_request_without_a_csrf_token(app, client, customer):
    assert log_in(client, customer.email).status_code == 303
    rules = list(_post_rules(app))
    assert len(rules) >= 5
    for rule in rules:
        path = _example_path(rule)
        for body in ({"data": {"anything": "1"}}, {"json": {"anything": 1}}):
            response = client.post(path, **body)
            assert response.status_code == 400, (rule.endpoint, path, response.status_code)
    assert is_logged_in(client)  # not even logout went through


def test_a_csrf_token_from_another_session_is_refused(app, client, customer):
    other = app.test_client()
    stolen = form_token(other)
    response = client.post(
        "/account/login",
        data={"csrf_token": stolen, "email": customer.email, "password": "correct horse battery"},
    )
    assert response.status_code == 400
    assert not is_logged_in(client)


def test_logout_with_another_sessions_token_keeps_the_session(app, client, customer):
    log_in(client, customer.email)
    other = app.test_client()
    response = client.post("/account/logout", data={"csrf_token": form_token(other)})
    assert response.status_code == 400
    assert is_logged_in(client)


def test_registration_without_a_token_creates_no_account(client):
    response = client.post(
        "/account/register",
        data={"display_name": "Mallory", "email": "m@example.com", "password": "longenough1"},
    )
    assert response.status_code == 400
    assert db.session.query(User).filter_by(email="m@example.com").count() == 0


def test_a_forged_token_is_refused(client, customer):
    form_token(client)  # the session has a real token; the attacker guesses another
    response = client.post(
        "/account/login",
        data={"csrf_token": "IjAxMjM0NTY3ODki.forged.signature", "email": customer.email},
    )
    assert response.status_code == 400


def test_the_stripe_webhook_needs_no_csrf_token_but_a_valid_signature(app, client):
    event = {
        "id": "evt_csrf_exempt_1",
        "object": "event",
        "type": "customer.created",
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }
    payload = json.dumps(event).encode()
    stamp = int(time.time())
    secret = app.config["STRIPE_WEBHOOK_SECRET"].encode()
    signature = hmac.new(secret, f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    signed = client.post(
        "/stripe/webhook",
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": f"t={stamp},v1={signature}"},
    )
    assert signed.status_code == 200
    unsigned = client.post("/stripe/webhook", data=payload, content_type="application/json")
    assert unsigned.status_code == 400


# Endpoints whose GET is allowed although their name sounds like an action: each GET only shows
# a confirmation page (tested below to change nothing), or reads Stripe's state idempotently.
GET_SHOWS_A_CONFIRMATION = {
    "maker.open_drop",
    "maker.close_drop",
    "maker.refund_order",
    "checkout.cancel",
    "checkout.success",  # Stripe returns the customer by GET; fulfil() is idempotent
    # Where buy's 303 lands: it only starts (or resumes) Stripe Checkout for the customer's own
    # held order, under the order's idempotency key; no money moves and no stock changes.
    "checkout.pay",
    # The emailed password-reset link and "Forgot your password?" show their forms on GET;
    # only the POST sends a link or sets a password.
    "account.forgot_password",
    "account.reset_password",
    # The shipping-rate pages: GET lists or shows the form; only POST saves or deletes.
    "maker.shipping_rates",
    "maker.shipping_rate",
}
ACTION_WORDS = (
    "logout",
    "buy",
    "pay",
    "hold",
    "refund",
    "open",
    "close",
    "cancel",
    "delete",
    "remove",
    "ship",
    "publish",
    "unschedule",
    "keep_open",
    "release",
    "fulfil",
    "webhook",
    "upload",
    "preview",
    "password",
)


def test_action_endpoints_do_not_accept_get_unless_it_only_confirms(app):
    offenders = []
    for rule in app.url_map.iter_rules():
        name = rule.endpoint.rsplit(".", 1)[-1]
        if "GET" not in rule.methods or rule.endpoint in GET_SHOWS_A_CONFIRMATION:
            continue
        if any(word in name for word in ACTION_WORDS) and rule.endpoint != "account.password":
            offenders.append(rule.endpoint)
    assert offenders == []


@pytest.mark.parametrize("endpoint", ["account.logout", "checkout.buy", "payments.webhook"])
def test_logout_buy_and_the_webhook_are_post_only(app, endpoint):
    methods = {m for rule in app.url_map.iter_rules(endpoint) for m in rule.methods}
    assert methods - {"OPTIONS"} == {"POST"}


def test_get_on_a_post_only_route_is_a_405_and_logs_nobody_out(client, customer):
    log_in(client, customer.email)
    response = client.get("/account/logout")
    assert response.status_code == 405
    assert is_logged_in(client)


def test_the_password_form_changes_nothing_on_get(client, customer):
    before = customer.password_hash
    log_in(client, customer.email)
    response = client.get("/account/password?new_password=hijacked1&confirm_password=hijacked1")
    assert response.status_code == 200
    db.session.refresh(customer)
    assert customer.password_hash == before


@pytest.fixture
def maker_with_sales(app):
    maker = make_maker()
    drop = make_drop(maker, state=SCHEDULED)
    batch = make_batch(drop=drop, product=make_product(maker))
    buyer = make_customer()
    paid = inventory.hold(batch.id, 1, customer=buyer, now=AT_DROP)
    inventory.confirm(paid, now=AT_DROP)
    held = inventory.hold(batch.id, 1, customer=buyer, now=AT_DROP)
    db.session.commit()
    return maker, drop, paid, held, buyer


def test_the_confirmation_pages_change_nothing_on_get(client, maker_with_sales):
    maker, drop, paid, held, buyer = maker_with_sales
    log_in(client, maker.email)
    for path in (
        f"/maker/drops/{drop.id}/open?when=now&confirm=y",
        f"/maker/drops/{drop.id}/close?when=now&confirm=y",
        f"/maker/orders/{paid.public_id}/refund?confirm=y",
    ):
        assert client.get(path).status_code == 200, path
    db.session.expire_all()
    assert db.session.get(Drop, drop.id).state == SCHEDULED
    assert db.session.get(Order, paid.id).state == PAID

    customer = client.application.test_client()
    log_in(customer, buyer.email)
    assert customer.get(f"/checkout/orders/{held.public_id}/cancel").status_code == 200
    db.session.expire_all()
    assert db.session.get(Order, held.id).state == HELD


def test_a_csrf_token_made_before_flask_is_accepted_by_flask_wtf_for_its_session_only(app):
    """``security.csrf_token`` (the signed-in drop page before Flask) signs as Flask-WTF does:
    Flask-WTF takes the token for the session it was made for and refuses it for any other."""
    token = security.csrf_token(app, "raw-token-of-ann")
    bobs = security.csrf_token(app, "raw-token-of-bob")

    assert security.csrf_token(app, "raw-token-of-ann") == token  # a reload within the minute
    with app.test_request_context("/"):
        session["csrf_token"] = "raw-token-of-ann"
        validate_csrf(token)
        with pytest.raises(ValidationError):
            validate_csrf(bobs)

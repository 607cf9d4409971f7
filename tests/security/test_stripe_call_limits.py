"""One customer cannot make the shop hammer Stripe: the page Stripe returns customers to asks
Stripe only while the order is undecided, at most once per window per session (counted in
Redis, as in production), and is rate-limited per customer and per address with a clear 429.
Calls are counted at the emulator, through the official ``stripe`` library the shop uses."""

from __future__ import annotations

import html
import re
import time

import pytest

from shop import limits
from shop.extensions import db
from testkit.factories import make_customer
from tests.support.stripe import fresh, held_order, live_batch, paid_order, sign_in, stripe_settings

CUSTOMER_IP = "198.51.100.7"
RELOADS = 10
WINDOW = 3  # seconds: the return page's Stripe check, made shorter for a test


@pytest.fixture
def app_overrides(rate_limits, emulator):
    return {**rate_limits, **stripe_settings(emulator)}


def _return(client, session_id: str, ip: str = CUSTOMER_IP):
    return client.get(
        f"/checkout/success?session_id={session_id}", environ_base={"REMOTE_ADDR": ip}
    )


def _amount(policy: str) -> int:
    return int(policy.split()[0])


def test_reloading_a_held_orders_return_page_asks_stripe_once_in_the_window(
    app, client, emulator, customer
):
    order = held_order(live_batch(edition_size=5), customer)
    sign_in(client, customer)
    asked = len(emulator.api_calls())

    pages = [_return(client, order.checkout_session_id) for _ in range(RELOADS)]

    assert emulator.api_calls()[asked:] == [
        ("GET", f"/v1/checkout/sessions/{order.checkout_session_id}")
    ]
    for page in pages:
        assert page.status_code == 200
        assert "Processing your payment" in page.get_data(as_text=True)


def test_after_the_window_the_return_page_asks_again_and_shows_the_numbers(
    app, client, emulator, customer
):
    # The rule, sooner; wide enough that a busy machine still makes the second return inside it.
    app.config["SHOP_LIMIT_RETURN_STRIPE_CHECK"] = f"1 per {WINDOW} seconds"
    order = held_order(live_batch(edition_size=5), customer)
    sign_in(client, customer)
    session_id = order.checkout_session_id
    assert "Processing your payment" in _return(client, session_id).get_data(as_text=True)
    emulator.complete(session_id)
    inside = _return(client, session_id)  # paid at Stripe, but the window is still open
    asked = len(emulator.api_calls())
    time.sleep(WINDOW + 0.1)

    after = _return(client, session_id)
    reloads = [_return(client, session_id) for _ in range(RELOADS)]

    assert "Processing your payment" in inside.get_data(as_text=True)
    assert len(emulator.api_calls()) == asked + 1  # the reloads of a paid order ask nothing
    for page in [after, *reloads]:
        assert "Paid — No.&nbsp;1 of 5" in page.get_data(as_text=True)
    assert fresh(order).state == "paid"


def test_one_customer_over_the_return_page_limit_gets_a_clear_429(app, client, emulator, customer):
    order = paid_order(emulator, live_batch(edition_size=5), customer)
    sign_in(client, customer)
    for _ in range(_amount(limits.RETURN_PER_CUSTOMER)):
        assert _return(client, order.checkout_session_id).status_code == 200

    blocked = _return(client, order.checkout_session_id)

    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 61
    assert blocked.mimetype == "text/html"
    text = html.unescape(blocked.get_data(as_text=True))
    assert re.search(r"Too many attempts in a short time\. Please try again in", text), text
    assert "Traceback" not in text and "RateLimitExceeded" not in text
    # Another customer at the same address is not affected.
    neighbour = app.test_client()
    other = make_customer()
    db.session.commit()
    theirs = paid_order(emulator, live_batch(edition_size=5), other)
    sign_in(neighbour, other)
    assert _return(neighbour, theirs.checkout_session_id).status_code == 200


def test_one_address_is_capped_on_the_return_page_across_customers(app, emulator):
    app.config["SHOP_LIMIT_RETURN_PER_IP"] = "12 per minute"  # the same rule, smaller numbers
    statuses = []
    for _ in range(4):
        customer = make_customer()
        db.session.commit()
        order = paid_order(emulator, live_batch(edition_size=5), customer)
        browser = app.test_client()
        sign_in(browser, customer)
        for _ in range(4):
            statuses.append(_return(browser, order.checkout_session_id, "203.0.113.66").status_code)
    assert statuses.count(200) == 12 and statuses.count(429) == 4


def test_a_json_caller_over_the_return_page_limit_gets_retry_after(app, client, emulator, customer):
    app.config["SHOP_LIMIT_RETURN_PER_CUSTOMER"] = "2 per minute"
    order = paid_order(emulator, live_batch(edition_size=5), customer)
    sign_in(client, customer)
    for _ in range(2):
        _return(client, order.checkout_session_id)

    blocked = client.get(
        f"/checkout/success?session_id={order.checkout_session_id}",
        headers={"Accept": "application/json"},
        environ_base={"REMOTE_ADDR": CUSTOMER_IP},
    )

    assert blocked.status_code == 429
    assert blocked.json["error"]["code"] == "too_many_requests"
    assert 0 < blocked.json["error"]["retry_after"] <= 61

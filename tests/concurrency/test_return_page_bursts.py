"""Bursts of parallel hits on the page Stripe returns customers to, over real sockets, against
gunicorn (several worker processes with threads), PostgreSQL and the emulator: a paid order is
answered from the database (zero Stripe calls), and with rate limits counted in Redis, as in
production, a held order's session is asked about once per window whichever process answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shop import clock, orders
from shop.extensions import db
from testkit import bursts, databases, factories, rawhttp, servers
from tests.concurrency.conftest import THREADS, WORKERS, assert_no_server_errors
from tests.support import redis_server
from tests.support.stripe import Emulator, held_order, live_batch, stripe_settings

pytestmark = pytest.mark.concurrency

HITS = 24  # more than the 12 request threads of the server: every thread answers some


@pytest.fixture(scope="module")
def stripe_handle(emulator) -> Emulator:
    """The package's emulator (the one the servers talk to), with its control API."""
    return Emulator(emulator)


@pytest.fixture(scope="module")
def return_app(race_database_url, emulator):
    """The app on the race database, pointed at the same emulator (for seeding)."""
    app = databases.make_app(race_database_url, **stripe_settings(emulator.url))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def limited_server(race_database_url, emulator) -> Iterator[servers.Server]:
    """The shop under gunicorn with rate limits on, counted in Redis under a private prefix."""
    with (
        redis_server.private_prefix() as prefix,
        servers.start_gunicorn(
            race_database_url,
            workers=WORKERS,
            threads=THREADS,
            stripe_api_base=emulator.url,
            extra_env={
                "RATELIMIT_ENABLED": "1",
                "REDIS_URL": redis_server.redis_url(),
                "RATELIMIT_KEY_PREFIX": prefix,
            },
        ) as server,
    ):
        yield server


def _order(app, stripe_handle: Emulator, *, paid: bool) -> tuple[str, str]:
    """A customer's order with its Checkout Session, paid and fulfilled or still held; returns
    (session id, the customer's email)."""
    with app.app_context():
        customer = factories.make_customer()
        order = held_order(live_batch(edition_size=5, limit=2), customer, 2)
        session_id = order.checkout_session_id
        if paid:
            stripe_handle.complete(session_id)
            assert orders.fulfil(session_id, now=clock.now()) == orders.FULFILLED
        email = customer.email
        db.session.remove()
    return session_id, email


def _burst_of_returns(server: servers.Server, session_id: str, email: str) -> bursts.Burst:
    customer = rawhttp.login(server.address, email)
    hit = rawhttp.build_request(
        server.address,
        "GET",
        f"/checkout/success?session_id={session_id}",
        cookies=customer.cookies,
    )
    return bursts.burst(server.address, [hit] * HITS)


def test_a_burst_of_return_page_hits_for_a_paid_order_asks_stripe_nothing(
    shop_server, return_app, stripe_handle
):
    session_id, email = _order(return_app, stripe_handle, paid=True)
    asked = stripe_handle.api_call_count()

    burst = _burst_of_returns(shop_server, session_id, email)

    assert_no_server_errors(burst.responses, shop_server)
    assert burst.statuses() == [200] * HITS
    assert all("Paid — No.&nbsp;1 and No.&nbsp;2 of 5" in r.text for r in burst.responses)
    assert stripe_handle.api_calls(after=asked) == []


def test_a_burst_of_return_page_hits_for_a_held_order_asks_stripe_once(
    limited_server, return_app, stripe_handle
):
    session_id, email = _order(return_app, stripe_handle, paid=False)
    asked = stripe_handle.api_call_count()

    burst = _burst_of_returns(limited_server, session_id, email)

    assert_no_server_errors(burst.responses, limited_server)
    assert burst.statuses() == [200] * HITS
    assert all("Processing your payment" in r.text for r in burst.responses)
    assert stripe_handle.api_calls(after=asked) == [("GET", f"/v1/checkout/sessions/{session_id}")]

"""The embedded setup under a (smaller) flash crowd: SQLite behind werkzeug's threaded server.

Every transaction there takes the write lock up front and waits for it, so buyers queue: never
an oversell, and never "database is locked" (or any 5xx) reaching a customer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shop import clock
from shop.extensions import db
from testkit import bursts, databases, rawhttp, seed, servers
from tests.concurrency.conftest import (
    AT_THE_LIMIT,
    REPETITIONS,
    SOLD_OUT,
    assert_burst,
    assert_no_server_errors,
    hold_units,
    login_all,
    stock,
    violations,
)

pytestmark = pytest.mark.concurrency


@pytest.fixture(scope="module")
def sqlite_app(tmp_path_factory, emulator) -> Iterator:
    url = databases.migrated_sqlite_database(tmp_path_factory.mktemp("sqlite-race"))
    app = databases.make_app(
        url,
        STRIPE_API_BASE=emulator.url,
        STRIPE_SECRET_KEY="sk_test_emulator",
        SHOP_BASE_URL="http://127.0.0.1",
    )
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def sqlite_server(sqlite_app) -> Iterator[servers.Server]:
    with servers.start_threaded_server(sqlite_app) as server:
        yield server


@pytest.fixture(scope="module")
def customers(sqlite_app):
    return seed.create_customers(sqlite_app, 20)


@pytest.fixture(scope="module")
def crowd(sqlite_server, customers) -> list[rawhttp.ShopSession]:
    return login_all(sqlite_server.address, customers, page="/account/")


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_twenty_customers_racing_for_the_last_five_units_on_sqlite_get_exactly_five(
    sqlite_app, sqlite_server, emulator, crowd, repetition
):
    batch_id = seed.seed_live_drop(sqlite_app, edition_size=15, limit=2).batch_id
    hold_units(sqlite_app, batch_id, [2] * 5, now=clock.now(), paid=True)  # 5 units left

    outcome = bursts.burst(sqlite_server.address, [s.buy_request(batch_id, 1) for s in crowd])

    assert_burst(outcome, sqlite_server, won=5, lost=15, saying=SOLD_OUT)
    assert stock(sqlite_app, batch_id) == (15, 10, 5)
    assert violations(sqlite_app, batch_id) == []


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_one_customer_on_two_devices_on_sqlite_cannot_hold_more_than_the_limit(
    sqlite_app, sqlite_server, customers, repetition
):
    batch_id = seed.seed_live_drop(sqlite_app, edition_size=20, limit=2).batch_id
    customer = customers[repetition]
    phone, laptop = login_all(sqlite_server.address, [customer, customer], page="/account/")
    requests = [device.buy_request(batch_id, 1) for device in (phone, laptop) for _ in range(5)]

    outcome = bursts.burst(sqlite_server.address, requests)

    assert_burst(outcome, sqlite_server, won=2, lost=8, saying=AT_THE_LIMIT)
    assert violations(sqlite_app, batch_id) == []


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_two_customers_asking_for_two_of_the_last_three_units_on_sqlite_never_oversell(
    sqlite_app, sqlite_server, crowd, repetition
):
    batch_id = seed.seed_live_drop(sqlite_app, edition_size=5, limit=2).batch_id
    hold_units(sqlite_app, batch_id, [2], now=clock.now())  # 3 units left
    first, second = crowd[2 * repetition], crowd[2 * repetition + 1]
    requests = [c.buy_request(batch_id, 2) for c in (first, second) for _ in range(3)]

    outcome = bursts.burst(sqlite_server.address, requests)

    assert_no_server_errors(outcome.responses, sqlite_server)
    assert outcome.count(303) == 1
    assert sorted(set(outcome.statuses())) == [303, 409]
    assert stock(sqlite_app, batch_id) == (5, 0, 4)
    assert violations(sqlite_app, batch_id) == []

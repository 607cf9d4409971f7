"""Hoarders in a burst: accounts behind one address, and one account on several devices,
holding over every batch of a drop at the same instant, against gunicorn (several processes
with threads) and PostgreSQL. The caps across a drop (SECURITY.md, "Hoarding") are one row per
account and per network, so holds racing on different batches — which lock different batch
rows — still meet there: no cap is passed by a single unit.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from shop.extensions import db
from testkit import bursts, invariants, rawhttp, seed, servers
from tests.concurrency.conftest import (
    THREADS,
    WORKERS,
    assert_no_server_errors,
    from_address,
    login_all,
    stock,
    violations,
)

pytestmark = pytest.mark.concurrency

REPETITIONS = 3
NETWORK_CAP = 40  # the defaults
ACCOUNT_CAP = 6
NETWORK_FULL = "held from your network"
ACCOUNT_FULL = "one account holds at most 6 units of a drop at once"


@pytest.fixture(scope="module")
def proxied_server(race_database_url, emulator) -> Iterator[servers.Server]:
    """The shop behind one trusted proxy, so each request can say which address it comes
    from; rate limits off, so only the hold's own rules refuse."""
    with servers.start_gunicorn(
        race_database_url,
        workers=WORKERS,
        threads=THREADS,
        stripe_api_base=emulator.url,
        extra_env={"SHOP_PROXY_COUNT": "1"},
    ) as server:
        yield server


@pytest.fixture(scope="module")
def office(seed_app, proxied_server) -> list[rawhttp.ShopSession]:
    """Thirty-four accounts, each logged in on its own session."""
    customers = seed.create_customers(seed_app, 34)
    return login_all(proxied_server.address, customers, page="/account/")


def public_address() -> str:
    """An address in a public /24 of its own (the caps ignore private ones)."""
    return f"81.{random.randrange(1, 250)}.{random.randrange(0, 250)}.{random.randrange(1, 250)}"


def held_across(app, drop_id: int) -> list[str]:
    with app.app_context(), db.engine.connect() as connection:
        return invariants.held_across_drop_violations(connection, drop_id)


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_accounts_behind_one_address_never_hold_more_than_the_network_cap(
    seed_app, proxied_server, office, repetition
):
    drop = seed.seed_live_drop(seed_app, batches=4, edition_size=100, limit=2)
    batches = drop.batch_ids
    crowd, others = office[:30], office[30:]
    shared = public_address()
    # Thirty accounts in one office ask for 2 units of two batches each: 120 units, cap 40.
    requests = [
        from_address(session.buy_request(batches[(n + k) % 4], 2), shared)
        for n, session in enumerate(crowd)
        for k in (0, 1)
    ]
    # Four customers elsewhere, in the same burst, are not held back by the office.
    requests += [
        from_address(session.buy_request(batches[n], 2), public_address())
        for n, session in enumerate(others)
    ]

    outcome = bursts.burst(proxied_server.address, requests)

    assert_no_server_errors(outcome.responses, proxied_server)
    office_answers, elsewhere = outcome.responses[:60], outcome.responses[60:]
    assert [r.status for r in elsewhere] == [303] * 4
    won = [r for r in office_answers if r.status == 303]
    refused = [r for r in office_answers if r.status != 303]
    assert len(won) == NETWORK_CAP // 2  # exactly the cap: never one unit over, none short
    assert {r.status for r in refused} == {429}
    assert all(NETWORK_FULL in r.text for r in refused)
    assert sum(stock(seed_app, batch_id)[2] for batch_id in batches) == NETWORK_CAP + 8
    assert held_across(seed_app, drop.drop_id) == []
    for batch_id in batches:
        assert violations(seed_app, batch_id) == []


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_one_account_on_several_devices_never_holds_more_than_the_account_cap(
    seed_app, proxied_server, office, repetition
):
    drop = seed.seed_live_drop(seed_app, batches=4, edition_size=100, limit=2)
    customer = seed.create_customers(seed_app, 1)[0]
    devices = login_all(proxied_server.address, [customer] * 3, page="/account/")
    requests = [
        from_address(device.buy_request(batch_id, 2), public_address())
        for device in devices
        for batch_id in drop.batch_ids
        for _ in range(2)
    ]

    outcome = bursts.burst(proxied_server.address, requests)

    assert_no_server_errors(outcome.responses, proxied_server)
    assert outcome.count(303) == ACCOUNT_CAP // 2
    assert outcome.count(409) == len(requests) - ACCOUNT_CAP // 2
    assert any(ACCOUNT_FULL in r.text for r in outcome.responses if r.status == 409)
    assert sum(stock(seed_app, batch_id)[2] for batch_id in drop.batch_ids) == ACCOUNT_CAP
    assert held_across(seed_app, drop.drop_id) == []
    for batch_id in drop.batch_ids:
        assert violations(seed_app, batch_id) == []

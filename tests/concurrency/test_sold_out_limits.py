"""A script pressing Buy on a sold-out batch, under gunicorn with several processes, rate
limits on and counted in Redis, over raw sockets: once the processes have refused such buys,
they answer them before Flask (shop/fast_path.py), counting the buy limit on Flask-Limiter's own
keys — so a synchronized burst gets exactly the limit's worth of "Sold out" and "Too many" for
the rest, whichever process and whichever path answers each request."""

from __future__ import annotations

import pytest

from shop import clock, limits
from testkit import bursts, rawhttp, seed
from tests.concurrency.conftest import (
    SOLD_OUT,
    assert_no_server_errors,
    fresh_addresses,
    from_address,
    hold_units,
    login_all,
    stock,
)
from tests.concurrency.test_password_work import amount

pytestmark = pytest.mark.concurrency

WARM_UPS = 6  # sold-out refusals of another customer, so each process keeps the page


def test_a_burst_of_buys_of_a_sold_out_batch_gets_the_limit_and_no_more(limited_server, seed_app):
    drop = seed.seed_live_drop(seed_app, edition_size=1, limit=1)
    hold_units(seed_app, drop.batch_id, [1], now=clock.now())
    warm, script = login_all(
        limited_server.address, seed.create_customers(seed_app, 2), page="/account/"
    )
    warm_ip, script_ip = fresh_addresses(2)
    for _ in range(WARM_UPS):
        refused = rawhttp.send_raw(
            limited_server.address, from_address(warm.buy_request(drop.batch_id, 1), warm_ip)
        )
        assert refused.status == 409 and SOLD_OUT in refused.text
    allowed = amount(limits.BUY_PER_CUSTOMER)
    buys = [
        from_address(script.buy_request(drop.batch_id, 1), script_ip) for _ in range(3 * allowed)
    ]

    outcome = bursts.burst(limited_server.address, buys)

    assert_no_server_errors(outcome.responses, limited_server)
    assert outcome.count(409) == allowed, outcome.statuses()
    assert outcome.count(429) == 2 * allowed
    told = [r for r in outcome.responses if r.status == 409]
    assert all(SOLD_OUT in r.text for r in told)
    assert {r.headers.get("x-ratelimit-limit") for r in told} == {str(allowed)}
    # read after the hit, as Flask-Limiter reads it: other hits of the burst may come between
    assert all(0 <= int(r.headers["x-ratelimit-remaining"]) < allowed for r in told)
    assert stock(seed_app, drop.batch_id) == (1, 0, 1)  # nothing held, nothing sold

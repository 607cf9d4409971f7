"""The crowd that keeps pressing Buy after the last unit is taken, under gunicorn with several
processes sharing Redis, over raw sockets: every one of them is told "Sold out" and nothing is
held (most without the hold statement, from the batch's shared sold-out facts); the moment the
sweeper gives units back the very next burst takes exactly those, however fresh the facts were.
"""

from __future__ import annotations

import pytest

from shop import clock
from testkit import bursts, seed
from tests.concurrency.conftest import (
    SOLD_OUT,
    assert_no_server_errors,
    expire_holds,
    hold_units,
    login_all,
    stock,
    violations,
)

pytestmark = pytest.mark.concurrency


def test_a_crowd_after_the_sell_out_is_refused_and_a_release_reaches_it_at_once(
    seed_app, redis_app, redis_shop
):
    drop = seed.seed_live_drop(seed_app, edition_size=3, limit=1)
    hold_units(seed_app, drop.batch_id, [1, 1, 1], now=clock.now())
    crowd = login_all(redis_shop.address, seed.create_customers(seed_app, 12), page="/account/")
    buys = [session.buy_request(drop.batch_id, 1) for session in crowd]

    refused = bursts.burst(redis_shop.address, buys)
    refused_again = bursts.burst(redis_shop.address, buys)  # now from the shared facts

    assert_no_server_errors(refused.responses + refused_again.responses, redis_shop)
    assert refused.statuses() == refused_again.statuses() == [409] * 12
    assert all(SOLD_OUT in r.text for r in refused.responses + refused_again.responses)
    assert stock(seed_app, drop.batch_id) == (3, 0, 3)

    assert expire_holds(redis_app, drop.batch_id, 2) == 2
    released = bursts.burst(redis_shop.address, buys)

    assert_no_server_errors(released.responses, redis_shop)
    assert released.count(303) == 2 and released.count(409) == 10
    assert stock(seed_app, drop.batch_id) == (3, 0, 3)
    assert violations(seed_app, drop.batch_id) == []

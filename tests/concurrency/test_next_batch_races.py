"""The next batch on sell-out under a burst (issue 17, item 3): the crowd goes at the last
units of Batch No. 7 and at No. 8, lined up behind it, at the same instant, through gunicorn
(several processes with threads) and PostgreSQL. No. 8 sells only once No. 7 has nothing left;
neither batch ever passes ``sold + held <= edition_size``."""

from __future__ import annotations

import re

import pytest

from shop.extensions import db
from shop.models import Batch
from testkit import bursts, seed
from tests.concurrency.conftest import assert_no_server_errors, login_all, stock, violations

pytestmark = pytest.mark.concurrency

REPETITIONS = 3


@pytest.fixture(scope="module")
def crowd(seed_app, shop_server):
    return login_all(shop_server.address, seed.create_customers(seed_app, 24), page="/account/")


def seven_and_eight(app) -> tuple[int, int]:
    drop = seed.seed_live_drop(app, edition_size=5, limit=1)
    no7 = drop.batch_id
    with app.app_context():
        seventh = db.session.get(Batch, no7)
        seventh.number = 7
        eighth = Batch(
            product_id=seventh.product_id,
            drop_id=seventh.drop_id,
            number=8,
            edition_size=10,
            price=seventh.price,
            currency=seventh.currency,
            per_customer_limit=1,
            follows_batch_id=no7,
        )
        db.session.add(eighth)
        db.session.commit()
        no8 = eighth.id
        db.session.remove()
    return no7, no8


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_the_crowd_at_no_7_and_no_8_at_once_buys_no_8_only_after_no_7_sold_out(
    seed_app, shop_server, crowd, repetition
):
    no7, no8 = seven_and_eight(seed_app)
    requests = [session.buy_request(no7 if n % 2 == 0 else no8) for n, session in enumerate(crowd)]

    outcome = bursts.burst(shop_server.address, requests)

    assert_no_server_errors(outcome.responses, shop_server)
    sevens = [r for n, r in enumerate(outcome.responses) if n % 2 == 0]
    eights = [r for n, r in enumerate(outcome.responses) if n % 2 == 1]
    assert sum(r.status == 303 for r in sevens) == 5  # No. 7 sells out: 12 asked for 5
    assert stock(seed_app, no7) == (5, 0, 5)
    held8 = sum(r.status == 303 for r in eights)
    assert stock(seed_app, no8) == (10, 0, held8)
    for refused in (r for r in eights if r.status != 303):
        assert refused.status == 409
        assert "Batch No. 8 goes on sale when No. 7 sells out" in refused.text, re.findall(
            r'role="alert">(.*?)</p>', refused.text, re.S
        )
    assert violations(seed_app, no7) == []
    assert violations(seed_app, no8) == []
    # After the burst No. 7 is gone, so No. 8 is on sale to the next buyer.
    assert crowd[1].buy(no8).status in (303, 409)

"""The waiting room's queue page reloads itself every few seconds; a script reloading it
absurdly often is answered 429 (its place is kept), counted in Redis like every other limit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shop import clock
from shop.extensions import db
from testkit.factories import make_batch, make_customer, make_drop
from tests.support.console import browser


@pytest.fixture
def app_overrides(rate_limits):
    return {**rate_limits, "SHOP_LIMIT_QUEUE_PER_CUSTOMER": "3 per minute"}


def test_reloading_the_queue_page_absurdly_often_is_refused_and_the_place_kept(app):
    now = clock.now()
    drop = make_drop(opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=1))
    drop.waiting_room = "on"
    make_batch(drop=drop, edition_size=1)
    front, customer = make_customer(), make_customer()
    db.session.commit()
    browser(app, front).get(f"/drops/{drop.slug}/queue")  # let in: the one unit is theirs to try
    client = browser(app, customer)

    answers = [client.get(f"/drops/{drop.slug}/queue") for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert 'class="queue__number">2<' in answers[2].get_data(as_text=True)

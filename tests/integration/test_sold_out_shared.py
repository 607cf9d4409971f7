"""The crowd that keeps pressing Buy after the last unit went (issue 15): once a buy found
nothing left of a batch, the facts of its sold-out page are shared (``page_cache.nothing_left``)
for at most a second and the next buys are answered from them without the hold statement — one
small read of the account the session claims. A unit coming back (a release) or a grown edition
drops them as it commits, so the very next buy may take it; a stale session is never told more
than a hold would tell it. On SQLite and PostgreSQL, with Redis: a process's own memory would not
hear another process give units back, so without Redis every buy asks the hold statement."""

from __future__ import annotations

import time

import pytest

from shop import clock, inventory, page_cache, users, waitlist
from shop.extensions import db
from shop.models import Batch, Order
from shop.models.order import CANCELLED
from testkit.factories import make_batch, make_customer
from tests.integration.test_drop_page_cache import _extend_edition
from tests.integration.test_sold_out import _buy, _live_drop, _signed_in, _take_all
from tests.support import redis_server
from tests.support.wire import statements_of


@pytest.fixture(params=["redis"])
def app_overrides(request):
    with redis_server.shared_store(request.param) as overrides:
        yield overrides


def _sold_out_seen(app, edition_size: int = 2):
    """A live batch whose every unit is held, and a first buyer already refused by the hold."""
    drop = _live_drop()
    batch = make_batch(drop=drop, edition_size=edition_size, limit=edition_size)
    _take_all(batch)
    first = app.test_client()
    assert (
        _buy(first, batch.id, 1, _signed_in(first, make_customer(), drop.slug)).status_code == 409
    )
    return drop, batch


def _orders() -> int:
    return db.session.scalar(db.select(db.func.count()).select_from(Order))


def test_after_one_refusal_the_next_buys_are_answered_without_the_hold_statement(app, client):
    drop, batch = _sold_out_seen(app)
    csrf = _signed_in(client, make_customer(), drop.slug)
    batch_id = batch.id
    orders = _orders()
    db.session.remove()

    with statements_of(db.engine) as statements:
        response = _buy(client, batch_id, 1, csrf)
    sent = [s for s in statements if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))]

    assert response.status_code == 409 and "Held units may come back." in response.text
    assert len(sent) == 1, "\n".join(sent)  # the claimed account and its place in line
    assert "session_token" in sent[0] and "waitlist_places" in sent[0]
    assert _orders() == orders  # nothing held, nothing written


@pytest.mark.parametrize(
    ("app_overrides", "wait"),
    [("memory", 0.0), ("redis", page_cache.STATE_SECONDS + 0.1)],
    ids=["without Redis", "a second later"],
    indirect=["app_overrides"],
)
def test_without_redis_or_a_second_later_the_buy_asks_the_hold_statement(app, client, wait):
    drop, batch = _sold_out_seen(app)
    csrf = _signed_in(client, make_customer(), drop.slug)
    batch_id = batch.id
    time.sleep(wait)
    db.session.remove()

    with statements_of(db.engine) as statements:
        response = _buy(client, batch_id, 1, csrf)

    assert response.status_code == 409
    assert any("INSERT INTO orders" in s or "held" in s for s in statements)  # the hold again


def test_a_released_hold_lets_the_very_next_buy_take_the_unit(app, client):
    drop, batch = _sold_out_seen(app)
    csrf = _signed_in(client, make_customer(), drop.slug)
    held = db.session.scalars(db.select(Order).where(Order.batch_id == batch.id)).first()
    inventory.release(held, CANCELLED, now=clock.now())
    db.session.commit()

    response = _buy(client, batch.id, 1, csrf)

    assert response.status_code == 303 and "/pay" in response.headers["Location"]


def test_a_grown_edition_lets_the_very_next_buy_through(app, client):
    drop, batch = _sold_out_seen(app)
    csrf = _signed_in(client, make_customer(), drop.slug)
    _extend_edition(drop, batch)
    db.session.commit()

    response = _buy(client, batch.id, 1, csrf)

    assert response.status_code == 303 and "/pay" in response.headers["Location"]


def test_a_session_ended_elsewhere_is_sent_to_log_in_not_told_about_the_line(app, client):
    drop, batch = _sold_out_seen(app)
    customer = make_customer()
    csrf = _signed_in(client, customer, drop.slug)
    waitlist.join(db.session.get(Batch, batch.id), 1, customer=customer, now=clock.now())
    users.revoke_sessions(customer)  # logged out everywhere, on another device
    db.session.commit()

    response = _buy(client, batch.id, 1, csrf)

    assert response.status_code == 303 and "/account/login" in response.headers["Location"]


def test_a_json_caller_whose_session_ended_gets_a_401_as_from_the_hold(app, client):
    drop, batch = _sold_out_seen(app)
    customer = make_customer()
    csrf = _signed_in(client, customer, drop.slug)
    users.revoke_sessions(customer)
    db.session.commit()

    response = _buy(client, batch.id, 1, csrf, Accept="application/json")

    assert response.status_code == 401 and response.get_json()["error"]["code"] == "login_required"


def test_the_shared_facts_still_say_whether_this_customer_is_in_line(app):
    drop, batch = _sold_out_seen(app)
    waiting, fresh = make_customer(), make_customer()
    waitlist.join(db.session.get(Batch, batch.id), 1, customer=waiting, now=clock.now())
    db.session.commit()
    pages = []
    for customer in (waiting, fresh):
        client = app.test_client()
        pages.append(_buy(client, batch.id, 1, _signed_in(client, customer, drop.slug)).text)

    assert "You're on the waitlist for this batch." in pages[0] and "/join" not in pages[0]
    assert "You're on the waitlist" not in pages[1] and "/join" in pages[1]

"""The crowd's cookieless reads (shop/fast_path.py): the live stock JSON and the anonymous drop
page are answered again without Flask's request machinery while the shared state is unchanged —
with the same headers the app sent, a fresh request id and clock, a 304 for the ETag — and go
back through Flask the moment anything differs (an edit, a cookie, a query string).

Each test runs on SQLite and PostgreSQL, with the page cache in memory and in Redis.
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from flask import request_started
from prometheus_client import REGISTRY

from shop import auth, clock, inventory, page_cache, room_store, waitlist
from shop.extensions import db
from shop.models import User
from testkit.factories import PASSWORD, make_batch, make_customer, make_drop
from tests.integration.test_drop_page_cache import _edit_story
from tests.support import redis_server
from tests.support.clients import log_in
from tests.support.warm import warmed

VOLATILE = {"X-Request-Id", "Content-Length", "Date"}


@pytest.fixture(params=["memory", "redis"])
def app_overrides(request):
    with redis_server.shared_store(request.param) as overrides:
        yield overrides


@contextmanager
def flask_requests(app):
    """How many requests reached Flask (its ``request_started`` signal) inside the block."""
    seen: list[object] = []

    def count(_sender, **_extra):
        seen.append(1)

    request_started.connect(count, app)
    try:
        yield seen
    finally:
        request_started.disconnect(count, app)


def live_drop():
    now = clock.now()
    drop = make_drop(opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=1))
    batch = make_batch(drop=drop, edition_size=20)
    db.session.commit()
    return drop, batch


def _headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in VOLATILE}


@pytest.mark.parametrize("kind", ["page", "stock"])
def test_a_repeat_cookieless_read_is_answered_without_flask_as_flask_answered(app, kind):
    drop, _batch = live_drop()
    path = f"/drops/{drop.slug}" if kind == "page" else f"/api/drops/{drop.slug}/stock"
    client = app.test_client()

    def first_read():
        with flask_requests(app) as through_flask:
            return client.get(path), through_flask

    first, through_flask = warmed(first_read, drop.slug)
    with flask_requests(app) as replayed:
        again = client.get(path)

    assert len(through_flask) == 1 and replayed == []
    assert again.status_code == first.status_code == 200
    assert _headers(again) == _headers(first)
    assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{16}", again.headers["X-Request-Id"])
    assert int(again.headers["Content-Length"]) == len(again.get_data())
    assert "Set-Cookie" not in again.headers
    if kind == "page":
        html = again.get_data(as_text=True)
        assert "<!--slot-" not in html and "Log in to buy" in html
        clocks = [
            re.search(r'data-now="([^"]+)"', r.get_data(as_text=True)) for r in (first, again)
        ]
        assert all(clocks) and clocks[1].group(1) >= clocks[0].group(1)
    else:
        assert again.get_json() == first.get_json()


def test_a_replayed_page_answers_its_etag_with_a_304(app):
    drop, _batch = live_drop()
    client = app.test_client()
    etag = warmed(lambda: client.get(f"/drops/{drop.slug}"), drop.slug).headers["ETag"]

    with flask_requests(app) as through_flask:
        answer = client.get(f"/drops/{drop.slug}", headers={"If-None-Match": etag})

    assert through_flask == []
    assert answer.status_code == 304 and answer.get_data() == b""
    assert answer.headers["ETag"] == etag
    assert "Content-Security-Policy" in answer.headers


def test_an_edit_sends_the_very_next_read_back_through_flask(app):
    drop, batch = live_drop()
    client = app.test_client()
    client.get(f"/drops/{drop.slug}")
    client.get(f"/drops/{drop.slug}")

    shown = _edit_story(drop, batch)
    db.session.commit()
    with flask_requests(app) as through_flask:
        html = client.get(f"/drops/{drop.slug}").get_data(as_text=True)

    assert len(through_flask) == 1 and shown in html


def test_new_numbers_are_never_answered_from_the_old_state(app):
    drop, batch = live_drop()
    client = app.test_client()
    stock = f"/api/drops/{drop.slug}/stock"
    assert client.get(stock).get_json()["batches"][0]["remaining"] == 20

    inventory.hold(batch.id, 2, customer=make_customer(), now=clock.now())
    db.session.commit()
    app.extensions["shop_page_cache"].delete([f"state:{drop.slug}"])  # as a second passing does

    assert client.get(stock).get_json()["batches"][0]["remaining"] == 18


@pytest.mark.parametrize("visitor", ["first signed in", "query string", "a cookie of any kind"])
def test_a_visitor_with_a_cookie_or_a_query_reaches_flask(app, visitor):
    drop, _batch = live_drop()
    customer = make_customer()
    db.session.commit()
    app.test_client().get(f"/drops/{drop.slug}")  # kept for the cookieless
    client, path = app.test_client(), f"/drops/{drop.slug}"
    if visitor == "first signed in":
        log_in(client, customer)
    elif visitor == "query string":
        path += "?utm_source=mail"
    else:
        client.set_cookie("theme", "dark")

    with flask_requests(app) as through_flask:
        answer = client.get(path)

    assert answer.status_code == 200 and len(through_flask) == 1
    if visitor == "first signed in":
        assert answer.headers["Cache-Control"] == "private, no-store"


def _signed_in_page(app, drop, customer):
    """A fresh browser of ``customer``'s, its first visit of the drop page (Flask's: it puts a
    CSRF token in their session), and the path."""
    client, path = app.test_client(), f"/drops/{drop.slug}"
    log_in(client, customer)
    first = client.get(path)
    assert first.status_code == 200
    return client, path, first


def _without_token_and_clock(html: str) -> str:
    html = re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value=""', html)
    return re.sub(r'data-now="[^"]+"', 'data-now=""', html)


def _tokens(response) -> set[str]:
    return set(re.findall(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True)))


def test_a_signed_in_visitor_who_holds_nothing_gets_the_page_of_their_shape_without_flask(app):
    drop, batch = live_drop()
    ann, bob = make_customer(), make_customer()
    db.session.commit()
    bob_client, path, _ = _signed_in_page(app, drop, bob)

    def first_read():
        with flask_requests(app) as through_flask:
            return _signed_in_page(app, drop, ann)[2], through_flask

    first, through_flask = warmed(first_read, drop.slug)
    with flask_requests(app) as replayed:
        again = bob_client.get(path)

    assert len(through_flask) == 1 and replayed == []
    assert again.status_code == 200
    assert _headers(again) == {k: v for k, v in _headers(first).items() if k != "Set-Cookie"}
    assert again.headers["Cache-Control"] == "private, no-store"
    assert int(again.headers["Content-Length"]) == len(again.get_data())
    html = again.get_data(as_text=True)
    assert "<!--slot-" not in html and page_cache.token_mark() not in html
    assert ann.email not in html and bob.email not in html  # a shape's page names nobody
    assert _without_token_and_clock(html) == _without_token_and_clock(first.get_data(as_text=True))
    mine = _tokens(again)
    assert len(mine) == 1 and not mine & _tokens(first)
    bought = bob_client.post(
        f"/checkout/batches/{batch.id}", data={"quantity": "1", "csrf_token": mine.pop()}
    )
    assert bought.status_code == 303  # the token is Bob's own, and Flask-WTF takes it
    with flask_requests(app) as through_flask:
        holding = bob_client.get(path).get_data(as_text=True)
    assert len(through_flask) == 1 and "You're holding" in holding  # his own rows: Flask's


def test_a_customer_whose_address_is_confirmed_gets_the_page_of_their_shape_without_flask(app):
    """Logging in with a confirmed address marks the session (``auth.VERIFIED``), as it does
    for nearly every customer of a shop that asks for confirmation: that mark changes nothing
    on a drop page, so it must not send the visitor to Flask."""
    drop, _batch = live_drop()
    ann, bob = make_customer(), make_customer(confirmed=True)
    db.session.commit()
    bob_client, path, _ = _signed_in_page(app, drop, bob)
    with bob_client.session_transaction() as session:
        assert session[auth.VERIFIED] is True
    warmed(lambda: _signed_in_page(app, drop, ann)[2], drop.slug)

    with flask_requests(app) as through_flask:
        again = bob_client.get(path)

    assert again.status_code == 200 and through_flask == []
    assert len(_tokens(again)) == 1


@pytest.mark.parametrize("confirmed", [False, True], ids=["address unconfirmed", "confirmed"])
def test_a_customer_who_logged_in_through_the_form_gets_the_page_without_flask(app, confirmed):
    """Whatever the real login leaves in the session (Flask-Login's claim, the nav's links,
    the mark of a confirmed address...) must not send a drop page to Flask: a key added there
    one day and not known to the fast path would silently send every such customer through
    Flask, as the confirmed address's mark once did."""
    drop, _batch = live_drop()
    ann, bob = make_customer(), make_customer(confirmed=confirmed)
    db.session.commit()
    client = app.test_client()
    form = client.get("/account/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form).group(1)
    logged_in = client.post(
        "/account/login", data={"email": bob.email, "password": PASSWORD, "csrf_token": csrf}
    )
    assert logged_in.status_code == 303
    path = f"/drops/{drop.slug}"
    assert client.get(path).status_code == 200  # Flask's: it shows the login's message
    warmed(lambda: _signed_in_page(app, drop, ann)[2], drop.slug)

    with flask_requests(app) as through_flask:
        again = client.get(path)

    assert again.status_code == 200 and through_flask == []
    assert len(_tokens(again)) == 1


@pytest.mark.parametrize(
    "what", ["a place in line", "a message to show", "a rotated session", "a forged cookie"]
)
def test_a_signed_in_visitor_with_anything_of_their_own_is_answered_by_flask(app, what):
    drop, _batch = live_drop()
    last_one = make_batch(drop=drop, edition_size=1, limit=1)
    ann, bob = make_customer(), make_customer()
    db.session.commit()
    if what == "a place in line":
        inventory.hold(last_one.id, 1, customer=make_customer(), now=clock.now())
        waitlist.join(last_one, 1, customer=bob, now=clock.now())
        db.session.commit()
    ann_client, path, _ = _signed_in_page(app, drop, ann)
    bob_client, _, _ = _signed_in_page(app, drop, bob)
    warmed(lambda: ann_client.get(path), drop.slug)  # Ann's shape is kept: Bob's too
    if what == "a message to show":
        with bob_client.session_transaction() as session:
            session["_flashes"] = [("info", "Welcome back")]
    elif what == "a rotated session":
        db.session.get(User, bob.id).session_token = "rotated-elsewhere"
        db.session.commit()
    elif what == "a forged cookie":
        cookie = bob_client.get_cookie(app.config["SESSION_COOKIE_NAME"])
        bob_client.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie.value[:-2] + "xx")

    with flask_requests(app) as through_flask:
        html = bob_client.get(path).get_data(as_text=True)

    assert len(through_flask) == 1
    expected = {
        "a place in line": "in line",
        "a message to show": "Welcome back",
        "a rotated session": "Log in",
        "a forged cookie": "Log in",
    }[what]
    assert expected in html


def test_the_room_counts_a_signed_in_visit_once_whoever_answers_it(app):
    app.config["SHOP_ROOM_AUTO_PER_SECOND"] = 1  # more than 10 arrivals in ten seconds
    drop, batch = live_drop()
    drop.waiting_room = "auto"
    ann = make_customer()
    db.session.commit()
    for _ in range(10):  # every unit held: once open, the room lets nobody in
        inventory.hold(batch.id, 2, customer=make_customer(), now=clock.now())
    db.session.commit()
    into_window = time.time() % room_store.ARRIVAL_WINDOW
    if into_window > room_store.ARRIVAL_WINDOW - 3:
        time.sleep(room_store.ARRIVAL_WINDOW - into_window)  # all in one window
    client, path, _ = _signed_in_page(app, drop, ann)  # arrival 1, Flask's
    client.get(path)  # arrival 2

    with flask_requests(app) as through_flask:
        answers = [client.get(path).get_data(as_text=True) for _ in range(10)]  # arrivals 3-12

    in_line = ["You're in line" in html for html in answers]
    assert in_line[:8] == [False] * 8 and in_line[-1]  # the 11th opens it: the line
    assert len(through_flask) < 10


def test_a_replayed_answer_is_logged_and_counted_like_any_other(app, caplog):
    drop, _batch = live_drop()
    client = app.test_client()
    client.get(f"/api/drops/{drop.slug}/stock")
    labels = {"endpoint": "storefront.drop_stock", "method": "GET", "status": "200"}
    before = REGISTRY.get_sample_value("shop_http_requests_total", labels) or 0

    with caplog.at_level(logging.INFO, logger="shop.requests"):
        answer = client.get(f"/api/drops/{drop.slug}/stock")

    lines = [r for r in caplog.records if r.name == "shop.requests"]
    assert len(lines) == 1
    assert lines[0].fields["route"] == "/api/drops/<slug>/stock"
    assert lines[0].fields["status"] == 200
    assert lines[0].request_id == answer.headers["X-Request-Id"]
    assert REGISTRY.get_sample_value("shop_http_requests_total", labels) == before + 1

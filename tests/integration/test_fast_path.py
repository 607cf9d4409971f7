"""The crowd's cookieless reads (shop/fast_path.py): the live stock JSON and the anonymous drop
page are answered again without Flask's request machinery while the shared state is unchanged —
with the same headers the app sent, a fresh request id and clock, a 304 for the ETag — and go
back through Flask the moment anything differs (an edit, a cookie, a query string).

Each test runs on SQLite and PostgreSQL, with the page cache in memory and in Redis.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from datetime import timedelta

import pytest
from flask import request_started
from prometheus_client import REGISTRY

from shop import clock, inventory
from shop.extensions import db
from testkit.factories import make_batch, make_customer, make_drop
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


@pytest.mark.parametrize("visitor", ["signed in", "query string", "a cookie of any kind"])
def test_a_visitor_with_a_cookie_or_a_query_always_reaches_flask(app, visitor):
    drop, _batch = live_drop()
    customer = make_customer()
    db.session.commit()
    app.test_client().get(f"/drops/{drop.slug}")  # kept for the cookieless
    client, path = app.test_client(), f"/drops/{drop.slug}"
    if visitor == "signed in":
        log_in(client, customer)
    elif visitor == "query string":
        path += "?utm_source=mail"
    else:
        client.set_cookie("theme", "dark")

    with flask_requests(app) as through_flask:
        answer = client.get(path)

    assert answer.status_code == 200 and len(through_flask) == 1
    if visitor == "signed in":
        assert answer.headers["Cache-Control"] == "private, no-store"


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

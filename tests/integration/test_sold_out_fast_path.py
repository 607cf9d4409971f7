"""The crowd pressing Buy after the last unit went, refused before Flask (shop/fast_path.py):
once a buy found nothing left of a batch (its facts shared, ``page_cache.nothing_left``), the
next buys of signed-in customers are answered without Flask's request machinery — after the
buy view's own checks, with the page Flask rendered for the same facts, the visitor's own nav
and CSRF token, the headers Flask sent, the rate limits counted on Flask-Limiter's own keys,
the refusal counted, logged and metered. Anything the fast path is not sure of is Flask's,
whose answer is then the visitor's. With Redis (the facts are shared only there), on SQLite
and PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from shop import page_cache, refusal_counts
from shop.extensions import db, limiter
from shop.models import Drop, Order, User
from testkit.factories import make_batch, make_customer
from tests.integration.test_fast_path import (
    _headers,
    _tokens,
    _without_token_and_clock,
    flask_requests,
)
from tests.integration.test_sold_out import _buy, _live_drop, _signed_in, _take_all
from tests.support import redis_server
from tests.support.wire import statements_of

TRIES = 5


@pytest.fixture(params=["limits off"])
def app_overrides(request):
    """Redis; rate limits off as in every test, or "limits on": three buys a minute per
    customer, counted in Redis as in production (or in a Redis that does not answer)."""
    with redis_server.shared_store("redis") as overrides:
        if request.param.startswith("limits on"):
            overrides |= {"RATELIMIT_ENABLED": True, "SHOP_LIMIT_BUY_PER_CUSTOMER": "3 per minute"}
        if request.param == "limits on, their store down":
            overrides["RATELIMIT_STORAGE_URI"] = "redis://127.0.0.1:1/0"  # nothing listens there
        yield overrides


@dataclass
class SoldOut:
    """A live batch whose every unit is held, a customer (address confirmed) whose buys Flask
    refuses — the hold statement's refusal shares the facts; ``refuse()`` makes one anew — and
    another, signed in on ``client`` with the drop page's token ``csrf``."""

    drop: Drop
    batch_id: int
    refuse: Callable[[], object]
    customer: User
    client: FlaskClient
    csrf: str

    def buy(self, **headers):
        return _buy(self.client, self.batch_id, 1, self.csrf, **headers)


def _sold_out(app, customer: User | None = None) -> SoldOut:
    drop = _live_drop()
    batch = make_batch(drop=drop, edition_size=2, limit=2)
    _take_all(batch)
    first = app.test_client()
    first_csrf = _signed_in(first, make_customer(confirmed=True), drop.slug)
    batch_id = batch.id

    def refuse():
        page_cache.numbers_changed(batch_ids=[batch_id])  # the facts dropped: the hold decides
        db.session.commit()
        answer = _buy(first, batch_id, 1, first_csrf)
        assert answer.status_code == 409
        return answer

    customer = customer or make_customer()
    client = app.test_client()
    csrf = _signed_in(client, customer, drop.slug)
    return SoldOut(drop, batch_id, refuse, customer, client, csrf)


def _fresh(refuse, act):
    """``act()`` a moment after a refusal by Flask, while the facts it shared are young: a slow
    machine retries rather than meeting facts that ran out (``page_cache.STATE_SECONDS``)."""
    for _ in range(TRIES):
        started = time.monotonic()
        flasks = refuse()
        answer = act()
        if time.monotonic() - started < page_cache.STATE_SECONDS * 0.8:
            return flasks, answer
    pytest.fail(f"no buy within {page_cache.STATE_SECONDS} s of a refusal in {TRIES} tries")


def _join_waitlist(sold: SoldOut, csrf: str):
    return sold.client.post(
        f"/waitlist/batches/{sold.batch_id}/join", data={"quantity": "1", "csrf_token": csrf}
    )


@pytest.mark.parametrize("confirmation", ["not asked", "asked and given"])
def test_a_buy_of_a_batch_with_nothing_left_is_refused_before_flask_as_flask_refuses_it(
    app, confirmation
):
    app.config["SHOP_REQUIRE_VERIFIED_EMAIL"] = confirmation != "not asked"
    sold = _sold_out(app, make_customer(confirmed=True))
    orders = db.session.scalar(db.select(db.func.count()).select_from(Order))
    db.session.remove()

    def buy():
        with flask_requests(app) as through_flask, statements_of(db.engine) as statements:
            answer = sold.buy()
        return answer, through_flask, statements

    flasks, (answer, through_flask, statements) = _fresh(sold.refuse, buy)

    assert answer.status_code == 409 and through_flask == []
    assert _headers(answer) == _headers(flasks)
    assert int(answer.headers["Content-Length"]) == len(answer.get_data())
    html = answer.get_data(as_text=True)
    assert "<!--slot-" not in html and page_cache.token_mark() not in html
    assert _without_token_and_clock(html) == _without_token_and_clock(flasks.text)
    assert "Held units may come back." in html and "Log out" in html
    assert len(statements) == 1 and "session_token" in statements[0]  # the claim, checked
    assert db.session.scalar(db.select(db.func.count()).select_from(Order)) == orders
    mine = _tokens(answer)
    assert len(mine) == 1 and not mine & _tokens(flasks)
    assert _join_waitlist(sold, mine.pop()).status_code == 303  # the visitor's own token


def test_the_page_before_flask_says_whether_this_customer_is_in_line(app):
    sold = _sold_out(app)
    assert _join_waitlist(sold, sold.csrf).status_code == 303
    _fresh(sold.refuse, sold.buy)  # Flask renders the in-line page

    def buy():
        with flask_requests(app) as through_flask:
            return sold.buy(), through_flask

    _, (answer, through_flask) = _fresh(sold.refuse, buy)

    assert answer.status_code == 409 and through_flask == []
    assert "You're on the waitlist for this batch." in answer.text
    assert "Join the waitlist" not in answer.text


def test_a_refusal_before_flask_is_counted_logged_and_metered_as_flasks_are(app, caplog):
    sold = _sold_out(app)
    batch_id = sold.batch_id
    sold_out = {"result": "sold_out"}
    answers = {"endpoint": "checkout.buy", "method": "POST", "status": "409"}

    def buy():
        refusal_counts.flush()
        before = (
            refusal_counts.totals([batch_id])[batch_id]["sold_out"],
            REGISTRY.get_sample_value("shop_holds_total", sold_out),
            REGISTRY.get_sample_value("shop_http_requests_total", answers),
        )
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="shop.requests"), flask_requests(app) as seen:
            answer = sold.buy()
        refusal_counts.flush()
        return answer, seen, before

    _, (answer, through_flask, before) = _fresh(sold.refuse, buy)

    assert answer.status_code == 409 and through_flask == []
    refused, holds, requests = before
    assert refusal_counts.totals([batch_id])[batch_id]["sold_out"] == refused + 1
    assert REGISTRY.get_sample_value("shop_holds_total", sold_out) == holds + 1
    assert REGISTRY.get_sample_value("shop_http_requests_total", answers) == requests + 1
    lines = [r for r in caplog.records if r.name == "shop.requests"]
    assert len(lines) == 1
    assert lines[0].fields["route"] == "/checkout/batches/<int:batch_id>"
    assert lines[0].fields["status"] == 409 and lines[0].fields["user_id"] == sold.customer.id
    assert lines[0].request_id == answer.headers["X-Request-Id"]


@pytest.mark.parametrize("path", ["before Flask", "through Flask"])
def test_a_buy_asks_redis_for_the_batchs_room_and_its_sold_out_facts_in_one_command(app, path):
    sold = _sold_out(app)
    batch_id = sold.batch_id
    headers = {"Accept": "application/json"} if path == "through Flask" else {}

    def buy():
        with (
            redis_server.commands_sent(app.config["RATELIMIT_KEY_PREFIX"]) as commands,
            flask_requests(app) as through_flask,
        ):
            answer = sold.buy(**headers)
        return answer, through_flask, commands

    _, (answer, through_flask, commands) = _fresh(sold.refuse, buy)

    assert answer.status_code == 409 and bool(through_flask) == (path == "through Flask")
    reads = [c for c in commands if f"/room/batch/{batch_id}" in c or f"gone:{batch_id}" in c]
    assert len(reads) == 1, reads
    assert reads[0].split()[0] == "MGET" and f"gone:{batch_id}" in reads[0]


CASES = {
    "no CSRF token": 400,
    "another session's CSRF token": 400,
    "a JSON caller": 409,
    "no quantity": 422,
    "a session ended elsewhere": 303,
    "a message to show": 409,
    "an unconfirmed address where one is asked for": 403,
    "over HTTPS, another site's page as Referer": 400,
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_buy_the_fast_path_is_not_sure_of_is_answered_by_flask(app, case):
    sold = _sold_out(app)
    _fresh(sold.refuse, sold.buy)  # the page and nav kept
    data = {"quantity": "1", "csrf_token": sold.csrf}
    headers = {}
    if case == "no CSRF token":
        del data["csrf_token"]
    elif case == "another session's CSRF token":
        data["csrf_token"] = _signed_in(app.test_client(), make_customer(), sold.drop.slug)
    elif case == "a JSON caller":
        headers["Accept"] = "application/json"
    elif case == "no quantity":
        del data["quantity"]
    elif case == "a session ended elsewhere":
        sold.customer.session_token = "rotated-elsewhere"
        db.session.commit()
    elif case == "a message to show":
        with sold.client.session_transaction() as session:
            session["_flashes"] = [("info", "Welcome back")]
    elif case.startswith("over HTTPS"):
        headers["Referer"] = "https://elsewhere.example/"
    else:
        app.config["SHOP_REQUIRE_VERIFIED_EMAIL"] = True
    scheme = "https" if case.startswith("over HTTPS") else "http"

    def buy():
        with flask_requests(app) as through_flask:
            answer = sold.client.post(
                f"/checkout/batches/{sold.batch_id}",
                data=data,
                headers=headers,
                base_url=f"{scheme}://localhost",
            )
        return answer, through_flask

    _, (answer, through_flask) = _fresh(sold.refuse, buy)

    assert len(through_flask) == 1
    assert answer.status_code == CASES[case], answer.text
    if case == "a JSON caller":
        assert answer.json["error"]["code"] == "sold_out"
    elif case == "a message to show":
        assert "Welcome back" in answer.text


def test_over_https_a_buy_posted_from_a_page_of_this_host_is_refused_before_flask(app):
    """Flask-WTF takes a token over HTTPS only with a Referer of this host; so does the fast
    path (another site's Referer is Flask's: above)."""
    sold = _sold_out(app)
    _fresh(sold.refuse, sold.buy)  # the page and nav kept

    def buy():
        with flask_requests(app) as through_flask:
            answer = sold.client.post(
                f"/checkout/batches/{sold.batch_id}",
                data={"quantity": "1", "csrf_token": sold.csrf},
                headers={"Referer": f"https://localhost/drops/{sold.drop.slug}"},
                base_url="https://localhost",
            )
        return answer, through_flask

    _, (answer, through_flask) = _fresh(sold.refuse, buy)

    assert answer.status_code == 409 and through_flask == []


@pytest.mark.parametrize("app_overrides", ["limits on"], indirect=True)
def test_refusals_before_and_inside_flask_share_one_count_of_the_buy_limit(app):
    """Flask counts a buy, the fast path sees it; the fast path counts, Flask sees it: the same
    keys in the same storage, and the same headers on either answer."""
    sold = _sold_out(app)
    with sold.client.session_transaction() as session:
        session["_flashes"] = [("info", "Welcome back")]  # the first buy is Flask's

    def buys():
        answers = []
        for _ in range(4):
            with flask_requests(app) as through_flask:
                answers.append((sold.buy(), len(through_flask)))
        return answers

    _, answers = _fresh(sold.refuse, buys)

    assert [(a.status_code, flask) for a, flask in answers] == [
        (409, 1),  # Flask: the message shown and used up
        (409, 0),
        (409, 0),
        (429, 1),  # the fourth in a minute: Flask's "too many"
    ]
    assert [a.headers.get("X-RateLimit-Remaining") for a, _ in answers[:3]] == ["2", "1", "0"]
    for answer, _ in answers[:3]:
        assert answer.headers["X-RateLimit-Limit"] == "3"
        assert 0 < int(answer.headers["X-RateLimit-Reset"]) - time.time() <= 61
        assert 0 <= int(answer.headers["Retry-After"]) <= 61
    assert int(answers[3][0].headers["Retry-After"]) > 0


@pytest.mark.parametrize("app_overrides", ["limits on, their store down"], indirect=True)
def test_a_rate_limit_store_that_stops_answering_leaves_the_refusal_to_flask(app, caplog):
    """The first buy after the store went down fails to count before Flask, and Flask answers
    it (Flask-Limiter then counts in memory); once Flask-Limiter knows, the fast path counts
    where it counts."""
    sold = _sold_out(app)
    _fresh(sold.refuse, sold.buy)  # the page and nav kept

    def buys():
        answers = []
        limiter._storage_dead = False  # the store just went: Flask-Limiter has not noticed
        for _ in range(2):
            with flask_requests(app) as through_flask:
                answers.append((sold.buy(), len(through_flask)))
        return answers

    _, answers = _fresh(sold.refuse, buys)

    assert [(a.status_code, flask) for a, flask in answers] == [(409, 1), (409, 0)]
    assert all("Sold out" in a.text for a, _ in answers)
    assert any("failed before Flask" in r.getMessage() for r in caplog.records)

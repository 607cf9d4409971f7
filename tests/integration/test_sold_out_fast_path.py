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
import re
import time

import pytest
from prometheus_client import REGISTRY

from shop import clock, page_cache, refusal_counts
from shop.extensions import db
from shop.models import Order
from testkit.factories import make_batch, make_customer
from tests.integration.test_fast_path import flask_requests
from tests.integration.test_sold_out import _buy, _live_drop, _signed_in, _take_all
from tests.support import redis_server
from tests.support.wire import statements_of

VOLATILE = {"X-Request-Id", "Content-Length", "Date"}
TRIES = 5


@pytest.fixture(params=["limits off"])
def app_overrides(request):
    """Redis; rate limits off as in every test, or "limits on": three buys a minute per
    customer, counted in Redis as in production."""
    with redis_server.shared_store("redis") as overrides:
        if request.param == "limits on":
            overrides |= {"RATELIMIT_ENABLED": True, "SHOP_LIMIT_BUY_PER_CUSTOMER": "3 per minute"}
        yield overrides


def _sold_out(app):
    """A live batch whose every unit is held, and a signed-in customer (address confirmed) whose
    buys Flask refuses (the hold statement's refusal shares the facts): ``refuse()`` makes such
    a refusal anew."""
    drop = _live_drop()
    batch = make_batch(drop=drop, edition_size=2, limit=2)
    _take_all(batch)
    first = app.test_client()
    csrf = _signed_in(first, _confirmed(), drop.slug)
    batch_id = batch.id

    def refuse():
        page_cache.numbers_changed(batch_ids=[batch_id])  # the facts dropped: the hold decides
        db.session.commit()
        answer = _buy(first, batch_id, 1, csrf)
        assert answer.status_code == 409
        return answer

    return drop, batch, refuse


def _confirmed():
    customer = make_customer()
    customer.email_verified_at = clock.now()
    return customer


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


def _headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in VOLATILE}


def _without_token_and_clock(html: str) -> str:
    html = re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value=""', html)
    return re.sub(r'data-now="[^"]+"', 'data-now=""', html)


def _tokens(html: str) -> set[str]:
    return set(re.findall(r'name="csrf_token" value="([^"]+)"', html))


@pytest.mark.parametrize("confirmation", ["not asked", "asked and given"])
def test_a_buy_of_a_batch_with_nothing_left_is_refused_before_flask_as_flask_refuses_it(
    app, confirmation
):
    app.config["SHOP_REQUIRE_VERIFIED_EMAIL"] = confirmation != "not asked"
    drop, batch, refuse = _sold_out(app)
    batch_id = batch.id
    client = app.test_client()
    csrf = _signed_in(client, _confirmed(), drop.slug)
    orders = db.session.scalar(db.select(db.func.count()).select_from(Order))
    db.session.remove()

    def buy():
        with flask_requests(app) as through_flask, statements_of(db.engine) as statements:
            answer = _buy(client, batch_id, 1, csrf)
        return answer, through_flask, statements

    flasks, (answer, through_flask, statements) = _fresh(refuse, buy)

    assert answer.status_code == 409 and through_flask == []
    assert _headers(answer) == _headers(flasks)
    assert int(answer.headers["Content-Length"]) == len(answer.get_data())
    html = answer.get_data(as_text=True)
    assert "<!--slot-" not in html and page_cache.token_mark() not in html
    assert _without_token_and_clock(html) == _without_token_and_clock(flasks.text)
    assert "Held units may come back." in html and "Log out" in html
    assert len(statements) == 1 and "session_token" in statements[0]  # the claim, checked
    assert db.session.scalar(db.select(db.func.count()).select_from(Order)) == orders
    mine = _tokens(html)
    assert len(mine) == 1 and not mine & _tokens(flasks.text)
    joined = client.post(
        f"/waitlist/batches/{batch_id}/join", data={"quantity": "1", "csrf_token": mine.pop()}
    )
    assert joined.status_code == 303  # the token on the page is the visitor's own


def test_the_page_before_flask_says_whether_this_customer_is_in_line(app):
    drop, batch, refuse = _sold_out(app)
    batch_id = batch.id
    client = app.test_client()
    csrf = _signed_in(client, make_customer(), drop.slug)
    assert (
        client.post(
            f"/waitlist/batches/{batch_id}/join", data={"quantity": "1", "csrf_token": csrf}
        ).status_code
        == 303
    )
    _fresh(refuse, lambda: _buy(client, batch_id, 1, csrf))  # Flask renders the in-line page

    def buy():
        with flask_requests(app) as through_flask:
            return _buy(client, batch_id, 1, csrf), through_flask

    _, (answer, through_flask) = _fresh(refuse, buy)

    assert answer.status_code == 409 and through_flask == []
    assert "You're on the waitlist for this batch." in answer.text
    assert "Join the waitlist" not in answer.text


def test_a_refusal_before_flask_is_counted_logged_and_metered_as_flasks_are(app, caplog):
    drop, batch, refuse = _sold_out(app)
    batch_id = batch.id
    client = app.test_client()
    customer = make_customer()
    csrf = _signed_in(client, customer, drop.slug)
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
            answer = _buy(client, batch_id, 1, csrf)
        refusal_counts.flush()
        return answer, seen, before

    _, (answer, through_flask, before) = _fresh(refuse, buy)

    assert answer.status_code == 409 and through_flask == []
    refused, holds, requests = before
    assert refusal_counts.totals([batch_id])[batch_id]["sold_out"] == refused + 1
    assert REGISTRY.get_sample_value("shop_holds_total", sold_out) == holds + 1
    assert REGISTRY.get_sample_value("shop_http_requests_total", answers) == requests + 1
    lines = [r for r in caplog.records if r.name == "shop.requests"]
    assert len(lines) == 1
    assert lines[0].fields["route"] == "/checkout/batches/<int:batch_id>"
    assert lines[0].fields["status"] == 409 and lines[0].fields["user_id"] == customer.id
    assert lines[0].request_id == answer.headers["X-Request-Id"]


CASES = {
    "no CSRF token": 400,
    "another session's CSRF token": 400,
    "a JSON caller": 409,
    "no quantity": 422,
    "a session ended elsewhere": 303,
    "a message to show": 409,
    "an unconfirmed address where one is asked for": 403,
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_buy_the_fast_path_is_not_sure_of_is_answered_by_flask(app, case):
    drop, batch, refuse = _sold_out(app)
    batch_id = batch.id
    client = app.test_client()
    customer = make_customer()
    csrf = _signed_in(client, customer, drop.slug)
    _fresh(refuse, lambda: _buy(client, batch_id, 1, csrf))  # the page and nav kept
    data = {"quantity": "1", "csrf_token": csrf}
    headers = {}
    if case == "no CSRF token":
        del data["csrf_token"]
    elif case == "another session's CSRF token":
        data["csrf_token"] = _signed_in(app.test_client(), make_customer(), drop.slug)
    elif case == "a JSON caller":
        headers["Accept"] = "application/json"
    elif case == "no quantity":
        del data["quantity"]
    elif case == "a session ended elsewhere":
        customer.session_token = "rotated-elsewhere"
        db.session.commit()
    elif case == "a message to show":
        with client.session_transaction() as session:
            session["_flashes"] = [("info", "Welcome back")]
    else:
        app.config["SHOP_REQUIRE_VERIFIED_EMAIL"] = True

    def buy():
        with flask_requests(app) as through_flask:
            answer = client.post(f"/checkout/batches/{batch_id}", data=data, headers=headers)
        return answer, through_flask

    _, (answer, through_flask) = _fresh(refuse, buy)

    assert len(through_flask) == 1
    assert answer.status_code == CASES[case], answer.text
    if case == "a JSON caller":
        assert answer.json["error"]["code"] == "sold_out"
    elif case == "a message to show":
        assert "Welcome back" in answer.text


@pytest.mark.parametrize("app_overrides", ["limits on"], indirect=True)
def test_refusals_before_and_inside_flask_share_one_count_of_the_buy_limit(app):
    """Flask counts a buy, the fast path sees it; the fast path counts, Flask sees it: the same
    keys in the same storage, and the same headers on either answer."""
    drop, batch, refuse = _sold_out(app)
    batch_id = batch.id
    client = app.test_client()
    csrf = _signed_in(client, make_customer(), drop.slug)
    with client.session_transaction() as session:
        session["_flashes"] = [("info", "Welcome back")]  # the first buy is Flask's

    def buys():
        answers = []
        for _ in range(4):
            with flask_requests(app) as through_flask:
                answers.append((_buy(client, batch_id, 1, csrf), len(through_flask)))
        return answers

    _, answers = _fresh(refuse, buys)

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

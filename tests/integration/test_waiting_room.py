"""The waiting room through the test client, on SQLite and PostgreSQL, with the line in this
process's memory and in Redis: who is sent to the line, places, admission by stock, the pass
cookie and its bad forms, the refusal of a skipped line, the maker's switch.
The same rules under gunicorn with several processes: tests/concurrency/test_waiting_room.py;
the queue page's rate limit: tests/security/test_rate_limits_queue.py."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer

from shop import audit, clock, drops, inventory, page_cache, room_store, waiting_room
from shop.extensions import db
from shop.models import AuditEntry, Drop, Order
from shop.models.order import CANCELLED
from testkit.factories import make_batch, make_customer, make_drop, make_maker
from tests.support import redis_server
from tests.support.clients import unsigned
from tests.support.console import browser
from tests.support.warm import warmed
from tests.support.wire import recorded_statements

PLACE = re.compile(r'class="queue__number">([0-9,]+)<')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(params=["memory", "redis"])
def app_overrides(request) -> dict:
    """Every test twice: the line in this process's memory, and in Redis under a fresh prefix."""
    if request.param == "memory":
        return {"REDIS_URL": None}
    redis_server.require_redis()
    prefix = f"smallbatch-room-{time.monotonic_ns()}"
    request.addfinalizer(lambda: redis_server.delete_keys(prefix))
    return {"REDIS_URL": redis_server.redis_url(), "RATELIMIT_KEY_PREFIX": prefix}


def room_drop(mode: str = "on", *, edition_size: int = 10, limit: int = 2) -> tuple[Drop, int]:
    now = clock.now()
    drop = make_drop(opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=1))
    drop.waiting_room = mode
    batch = make_batch(drop=drop, edition_size=edition_size, limit=limit)
    db.session.commit()
    return drop, batch.id


def shopper(app):
    customer = make_customer()
    db.session.commit()
    return browser(app, customer), customer


def place_in(page) -> int:
    found = PLACE.search(page.get_data(as_text=True))
    assert found, page.get_data(as_text=True)[:2000]
    return int(found.group(1).replace(",", ""))


def queue_url(drop: Drop) -> str:
    return f"/drops/{drop.slug}/queue"


def buy(client, batch_id: int, quantity: int = 1):
    return client.form(f"/checkout/batches/{batch_id}", {"quantity": str(quantity)})


def test_a_signed_in_visitor_of_a_live_drop_with_the_room_on_is_in_line_on_the_drop_page(app):
    drop, _ = room_drop(edition_size=1)
    ahead, _ = shopper(app)
    ahead.get(f"/drops/{drop.slug}")  # the one unit's turn is theirs
    client, _ = shopper(app)

    page = client.get(f"/drops/{drop.slug}")

    assert page.status_code == 200  # the line itself: no redirect for a crowd to wait on twice
    assert place_in(page) == 2
    assert f'content="2; url={queue_url(drop)}"' in page.get_data(as_text=True)  # reloads there
    assert page.headers["Cache-Control"] == "private, no-store"
    assert client.get_cookie(waiting_room.cookie_name(drop.id)) is not None
    assert place_in(client.get(queue_url(drop))) == 2  # the same place at the queue's address
    assert place_in(client.get(f"/drops/{drop.slug}")) == 2


def test_a_visitor_whose_turn_comes_at_once_is_let_in_from_the_drop_page(app):
    drop, batch_id = room_drop()
    client, _ = shopper(app)

    page = client.get(f"/drops/{drop.slug}")

    assert page.status_code == 200  # no trip through the queue page: it would only say "go"
    assert "your turn: choose how many" in page.get_data(as_text=True)
    assert client.get_cookie(waiting_room.cookie_name(drop.id)) is not None
    assert client.get(f"/drops/{drop.slug}").status_code == 200  # the pass lets them in
    assert buy(client, batch_id).status_code == 303


def test_an_anonymous_visitor_reads_the_drop_page_while_the_room_is_on(app):
    drop, _ = room_drop()
    assert app.test_client().get(f"/drops/{drop.slug}").status_code == 200


def test_with_the_room_off_nobody_waits(app):
    drop, batch_id = room_drop("off")
    client, _ = shopper(app)

    assert client.get(f"/drops/{drop.slug}").status_code == 200
    assert client.get(queue_url(drop)).location.endswith(f"/drops/{drop.slug}")
    assert buy(client, batch_id).status_code == 303


def test_places_are_handed_out_in_arrival_order_and_the_first_is_let_in(app):
    drop, _ = room_drop(edition_size=1)
    first, _ = shopper(app)
    second, _ = shopper(app)
    third, _ = shopper(app)

    let_in = first.get(queue_url(drop))
    waiting = [second.get(queue_url(drop)), third.get(queue_url(drop))]

    assert let_in.status_code == 303 and let_in.location.endswith(f"/drops/{drop.slug}")
    assert first.get(f"/drops/{drop.slug}").status_code == 200  # the pass lets them in
    assert [place_in(page) for page in waiting] == [2, 3]
    html = waiting[0].get_data(as_text=True)
    assert f'<meta http-equiv="refresh" content="2; url={queue_url(drop)}">' in html
    assert "Nobody: you're next" in html
    assert waiting[0].headers["Cache-Control"] == "private, no-store"


def test_the_back_of_a_line_reloads_every_thirty_seconds_and_its_front_every_two(app):
    app.config["SHOP_ROOM_ADMIT_PER_SECOND"] = 1  # two turns within two seconds
    every_unit_held = waiting_room.Stock(free=0, unsold=3)  # only a give-back moves the line

    def reload_after(ahead: int) -> int:
        turn = room_store.Turn(
            place=ahead + 1,
            served=0,
            admitted_until=0,
            requeued=False,
            ahead=ahead,
            waiting=500,
            called=0,
        )
        return waiting_room.refresh_seconds(turn, every_unit_held)

    with app.app_context():
        assert [reload_after(ahead) for ahead in (0, 1, 2, 3, 499)] == [2, 2, 5, 30, 30]


def test_one_account_keeps_one_place_on_every_device(app):
    drop, _ = room_drop(edition_size=1)
    front, _ = shopper(app)
    front.get(queue_url(drop))
    laptop, customer = shopper(app)
    phone = browser(app, customer)
    behind, _ = shopper(app)

    places = [place_in(laptop.get(queue_url(drop)))]
    places.append(place_in(behind.get(queue_url(drop))))
    places += [place_in(phone.get(queue_url(drop))), place_in(laptop.get(queue_url(drop)))]

    assert places == [2, 3, 2, 2]


def test_admission_stops_when_every_unit_is_held_and_resumes_when_a_hold_is_released(app):
    drop, batch_id = room_drop(edition_size=1, limit=1)
    first, first_customer = shopper(app)
    second, _ = shopper(app)
    first.get(queue_url(drop))
    assert place_in(second.get(queue_url(drop))) == 2

    first.get(f"/drops/{drop.slug}")
    assert buy(first, batch_id).status_code == 303
    assert place_in(second.get(queue_url(drop))) == 2  # the numbers may lag: the slot does not
    time.sleep(page_cache.STATE_SECONDS + 0.1)  # the shared numbers are at most this old
    still = second.get(queue_url(drop))
    assert place_in(still) == 2
    assert "Every unit is held by someone paying right now" in still.get_data(as_text=True)

    order = db.session.query(Order).filter_by(customer_id=first_customer.id).one()
    inventory.release(order, CANCELLED, now=clock.now())
    db.session.commit()
    time.sleep(waiting_room.USED_GRACE_MS / 1000)  # the used turn's slot has ended

    let_in = second.get(queue_url(drop))
    assert let_in.status_code == 303 and let_in.location.endswith(f"/drops/{drop.slug}")
    assert buy(second, batch_id).status_code == 303


def test_a_turn_used_on_a_refused_buy_passes_to_the_next_in_line(app):
    drop, batch_id = room_drop(edition_size=1, limit=1)
    first, _ = shopper(app)
    second, _ = shopper(app)
    first.get(queue_url(drop))
    assert place_in(second.get(queue_url(drop))) == 2

    assert buy(first, batch_id, quantity=2).status_code in (409, 422)  # over the limit
    time.sleep(waiting_room.USED_GRACE_MS / 1000)

    let_in = second.get(queue_url(drop))
    assert let_in.status_code == 303 and let_in.location.endswith(f"/drops/{drop.slug}")


def test_everyone_waiting_is_told_at_once_when_the_last_unit_is_sold(app):
    drop, batch_id = room_drop(edition_size=1, limit=1)
    first, first_customer = shopper(app)
    waiting = [shopper(app)[0] for _ in range(3)]
    first.get(queue_url(drop))
    for client in waiting:
        assert client.get(queue_url(drop)).status_code == 200
    first.get(f"/drops/{drop.slug}")
    buy(first, batch_id)
    order = db.session.query(Order).filter_by(customer_id=first_customer.id).one()
    inventory.confirm(order, now=clock.now())
    db.session.commit()

    answers = [client.get(queue_url(drop)) for client in waiting]

    assert [a.status_code for a in answers] == [409, 409, 409]
    assert all("Every unit of this drop has been sold" in a.get_data(as_text=True) for a in answers)


def test_a_warm_queue_page_asks_the_database_nothing(app):
    drop, _ = room_drop(edition_size=1, limit=1)
    first, _ = shopper(app)
    waiting, _ = shopper(app)
    path = queue_url(drop)
    first.get(path)  # called: the one unit is theirs to try for
    assert place_in(warmed(lambda: waiting.get(path), drop.slug)) == 2

    with recorded_statements(db.engine) as statements:
        again = waiting.get(path)

    assert place_in(again) == 2
    assert statements == []


def test_every_visitor_in_line_gets_the_shared_page_with_their_own_place_and_token(app):
    drop, _ = room_drop(edition_size=1, limit=1)
    first, _ = shopper(app)
    first.get(queue_url(drop))
    customer, _ = shopper(app)
    maker = browser(app, make_maker())
    pages = [client.get(queue_url(drop)) for client in (customer, maker)]

    texts = [page.get_data(as_text=True) for page in pages]
    assert [place_in(page) for page in pages] == [2, 3]
    tokens = [unsigned(CSRF.search(text).group(1)) for text in texts]
    assert tokens == [unsigned(customer.csrf), unsigned(maker.csrf)] and tokens[0] != tokens[1]
    assert "Maker console" not in texts[0] and "Maker console" in texts[1]
    assert all(page.headers["Cache-Control"] == "private, no-store" for page in pages)
    assert all("<!--slot-" not in text for text in texts)


def test_a_makers_edit_shows_on_the_very_next_queue_page(app):
    drop, batch_id = room_drop(edition_size=1, limit=1)
    first, _ = shopper(app)
    first.get(queue_url(drop))
    waiting, _ = shopper(app)
    assert drop.title in waiting.get(queue_url(drop)).get_data(as_text=True)

    details = drops.DropDetails(
        title="The Spring Release", story=drop.story, batch_ids=[batch_id], slug=drop.slug
    )
    drops.update_drop(drop, details, actor=audit.CLI, now=clock.now())
    db.session.commit()

    assert "The Spring Release" in waiting.get(queue_url(drop)).get_data(as_text=True)


def test_the_stock_json_ends_the_wait_only_when_every_unit_is_sold_for_good(app):
    """The queue page's script ends the wait on ``sold_out_for_good``; a held unit can come
    back, so "none free right now" (``sold_out``) must not end it, and the line agrees."""
    drop, gone_id = room_drop(edition_size=1, limit=1)
    held_id = make_batch(drop=drop, edition_size=1, limit=1).id
    now = clock.now()
    inventory.confirm(inventory.hold(gone_id, 1, customer=make_customer(), now=now), now=now)
    held = inventory.hold(held_id, 1, customer=make_customer(), now=now)
    db.session.commit()
    client, _ = shopper(app)
    stock_url = f"/api/drops/{drop.slug}/stock"

    all_taken = app.test_client().get(stock_url)
    waiting = client.get(queue_url(drop))

    body = all_taken.get_json()
    assert [(b["id"], b["sold_out"], b["sold_out_for_good"]) for b in body["batches"]] == [
        (gone_id, True, True),
        (held_id, True, False),
    ]
    assert body["sold_out_for_good"] is False
    assert waiting.status_code == 200  # still in line: the hold may lapse

    inventory.confirm(held, now=clock.now())
    db.session.commit()
    time.sleep(page_cache.STATE_SECONDS + 0.1)  # the shared numbers are at most this old

    body = app.test_client().get(stock_url).get_json()
    assert [b["sold_out_for_good"] for b in body["batches"]] == [True, True]
    assert body["sold_out_for_good"] is True
    assert client.get(queue_url(drop)).status_code == 409


def test_the_queue_page_brings_its_script_and_the_sold_out_news_from_the_shop(app):
    drop, _ = room_drop(edition_size=1)
    front, _ = shopper(app)
    front.get(queue_url(drop))  # let in
    client, _ = shopper(app)

    page = client.get(queue_url(drop))

    html = page.get_data(as_text=True)
    assert '<script src="/static/js/line.js" defer></script>' in html
    assert f'data-line-stock-url="/api/drops/{drop.slug}/stock"' in html
    assert '<template id="line-sold-out"' in html and "Every unit of this drop" in html
    assert f'<meta http-equiv="refresh" content="2; url={queue_url(drop)}">' in html  # no JS
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "connect-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "private, no-store"


def test_a_customer_who_skipped_the_line_cannot_buy(app):
    drop, batch_id = room_drop(edition_size=1)
    front, _ = shopper(app)
    front.get(queue_url(drop))  # opens the room and is let in
    skipper, _ = shopper(app)

    refused = buy(skipper, batch_id)

    assert refused.status_code == 403
    html = refused.get_data(as_text=True)
    assert "Please wait your turn" in html and queue_url(drop) in html
    assert db.session.query(Order).count() == 0
    json_refusal = skipper.post(
        f"/checkout/batches/{batch_id}",
        data={"csrf_token": skipper.csrf, "quantity": "1"},
        headers={"Accept": "application/json"},
    )
    assert json_refusal.status_code == 403
    assert json_refusal.get_json()["error"]["code"] == "not_your_turn"


def _cookie_for(app, drop: Drop, payload: dict, *, secret: str | None = None) -> str:
    serializer = URLSafeTimedSerializer(secret or app.config["SECRET_KEY"], salt="smallbatch.line")
    return serializer.dumps(payload)


@pytest.mark.parametrize("kind", ["forged", "someone else's", "expired", "garbage"])
def test_a_bad_queue_cookie_sends_its_bearer_to_the_back_of_the_line(app, kind, monkeypatch):
    drop, batch_id = room_drop(edition_size=1)
    front, front_customer = shopper(app)
    front.get(queue_url(drop))  # let in: their cookie is a pass
    holder, holder_customer = shopper(app)
    assert place_in(holder.get(queue_url(drop))) == 2
    later, _ = shopper(app)
    later.get(queue_url(drop))  # place 3
    good = {"d": drop.id, "u": holder_customer.id, "p": 1, "a": 2**52}
    if kind == "forged":
        value = _cookie_for(app, drop, good, secret="not-the-shop-secret-at-all-0123456789")
    elif kind == "someone else's":
        value = front.get_cookie(f"smallbatch_line_{drop.id}").value
        assert front_customer.id != holder_customer.id
    elif kind == "expired":
        long_ago = time.time() - 13 * 3600  # a place is good for 12 hours
        with monkeypatch.context() as patched:
            patched.setattr("itsdangerous.timed.time.time", lambda: long_ago)
            value = _cookie_for(app, drop, good)
    else:
        value = "not-a-cookie"
    holder.set_cookie(f"smallbatch_line_{drop.id}", value)

    assert buy(holder, batch_id).status_code == 403  # never a pass
    page = holder.get(queue_url(drop))

    assert page.status_code == 200
    assert place_in(page) == 4
    assert "You have joined at the back of the line" in page.get_data(as_text=True)
    assert place_in(holder.get(queue_url(drop))) == 4  # the fresh cookie is good


def test_a_queue_page_for_a_drop_that_is_not_live_is_the_drop_page(app):
    now = clock.now()
    drop = make_drop(opens_at=now + timedelta(hours=1), closes_at=now + timedelta(days=1))
    drop.waiting_room = "on"
    db.session.commit()
    client, _ = shopper(app)

    page = client.get(queue_url(drop))

    assert page.status_code == 303 and page.location.endswith(f"/drops/{drop.slug}")
    assert client.get("/drops/no-such-drop/queue").status_code == 404


def test_an_anonymous_visitor_of_the_queue_page_logs_in_first(app):
    drop, _ = room_drop()
    page = app.test_client().get(queue_url(drop))
    assert page.status_code == 303 and "/account/login" in page.location


def test_the_room_opens_by_itself_when_arrivals_pass_the_setting(app):
    app.config["SHOP_ROOM_AUTO_PER_SECOND"] = 1  # more than 10 arrivals in ten seconds
    drop, batch_id = room_drop("auto")
    client, _ = shopper(app)
    into_window = time.time() % room_store.ARRIVAL_WINDOW  # arrivals count per ten-second window
    if into_window > room_store.ARRIVAL_WINDOW - 3:
        time.sleep(room_store.ARRIVAL_WINDOW - into_window)  # all twelve in one window

    answers = [client.get(f"/drops/{drop.slug}").get_data(as_text=True) for _ in range(12)]

    turns = ["your turn: choose how many" in page for page in answers]
    assert turns == [False] * 10 + [True, False]  # the 11th opened it (and let them in)
    late, _ = shopper(app)
    assert buy(late, batch_id).status_code == 403


def test_the_maker_turns_the_room_on_and_off_in_the_console(app):
    drop, batch_id = room_drop("off")
    console = browser(app, drop.maker)
    client, _ = shopper(app)
    assert client.get(f"/drops/{drop.slug}").status_code == 200

    page = console.get(f"/maker/drops/{drop.id}")
    assert 'name="mode" value="off" checked' in page.get_data(as_text=True)
    assert console.form(f"/maker/drops/{drop.id}/waiting-room", {"mode": "on"}).status_code == 303

    let_in = client.get(f"/drops/{drop.slug}")  # through the room: a turn, given at once
    assert let_in.status_code == 200 and "your turn: choose how many" in let_in.get_data(
        as_text=True
    )
    assert db.session.get(Drop, drop.id, populate_existing=True).waiting_room == "on"
    assert db.session.query(AuditEntry).filter_by(action="drop.waiting_room").count() == 1
    console.form(f"/maker/drops/{drop.id}/waiting-room", {"mode": "off"})
    assert client.get(f"/drops/{drop.slug}").status_code == 200
    assert buy(client, batch_id).status_code == 303
    refused = console.form(f"/maker/drops/{drop.id}/waiting-room", {"mode": "sometimes"})
    assert refused.status_code == 303
    assert db.session.get(Drop, drop.id, populate_existing=True).waiting_room == "off"


def test_another_maker_cannot_switch_the_room(app):
    drop, _ = room_drop("off")
    other_maker = make_maker()
    db.session.commit()
    other = browser(app, other_maker)
    answer = other.form(f"/maker/drops/{drop.id}/waiting-room", {"mode": "on"})
    assert answer.status_code == 404

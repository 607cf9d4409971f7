"""The waiting room under real crowds: gunicorn with several processes and threads, PostgreSQL
and Redis, over raw sockets. Places are handed out in arrival order and once per account
whatever the crowd does at the same instant; nobody who skipped the line holds a unit; turns
follow stock (none while every unit is held, as many as were freed when the sweeper releases
holds); a sell-out reaches everyone waiting at once; the line survives a restart of the app;
and the same rules hold in one process without Redis.
"""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import text

from shop import clock, inventory, page_cache, waiting_room
from shop.extensions import db
from shop.models import Order, User
from testkit import bursts, rawhttp, seed, servers
from tests.concurrency.conftest import (
    THREADS,
    assert_no_server_errors,
    expire_holds,
    login_all,
    stock,
    violations,
)

pytestmark = pytest.mark.concurrency

PLACE = re.compile(r'class="queue__number">([0-9,]+)<')
SOLD_OUT = "Every unit of this drop has been sold"
WAIT_YOUR_TURN = "Please wait your turn"


def room_drop(app, *, edition_size: int, limit: int = 1, held_by_others: int = 0):
    """A live drop with its waiting room on; ``held_by_others`` units already held."""
    drop = seed.seed_live_drop(app, edition_size=edition_size, limit=limit)
    with app.app_context():
        db.session.execute(
            text("UPDATE drops SET waiting_room = 'on' WHERE id = :id"), {"id": drop.drop_id}
        )
        db.session.commit()
        db.session.remove()
    if held_by_others:
        seed_holds(app, drop.batch_id, held_by_others)
    return drop


def seed_holds(app, batch_id: int, count: int) -> None:
    customers = seed.create_customers(app, count)
    with app.app_context():
        for customer in customers:
            inventory.hold(batch_id, 1, customer=db.session.get(User, customer.id), now=clock.now())
        db.session.commit()
        db.session.remove()


def shoppers(app, server, count: int) -> list[rawhttp.ShopSession]:
    return login_all(server.address, seed.create_customers(app, count), page="/account/")


def queue_path(drop) -> str:
    return f"/drops/{drop.slug}/queue"


def place_of(response: rawhttp.Response) -> int:
    found = PLACE.search(response.text)
    assert found, f"{response.status}: {response.text[:500]}"
    return int(found.group(1).replace(",", ""))


def visit(session: rawhttp.ShopSession, drop) -> rawhttp.Response:
    return session.get(queue_path(drop))


def burst_visits(server, sessions, drop) -> list[rawhttp.Response]:
    outcome = bursts.burst(server.address, [s.get_request(queue_path(drop)) for s in sessions])
    assert_no_server_errors(outcome.responses, server)
    for session, response in zip(sessions, outcome.responses, strict=True):
        session.cookies.update(response.cookies)
    return outcome.responses


def test_places_are_handed_out_in_arrival_order_under_a_synchronized_burst(seed_app, redis_shop):
    drop = room_drop(seed_app, edition_size=2, held_by_others=2)  # nobody is let in meanwhile
    first_wave, second_wave = (
        shoppers(seed_app, redis_shop, 24),
        shoppers(seed_app, redis_shop, 24),
    )

    first = [place_of(r) for r in burst_visits(redis_shop, first_wave, drop)]
    second = [place_of(r) for r in burst_visits(redis_shop, second_wave, drop)]

    assert sorted(first) == list(range(1, 25))  # one number each: no duplicate, no gap
    assert sorted(second) == list(range(25, 49))  # everyone who came later is behind
    again = [place_of(r) for r in burst_visits(redis_shop, first_wave + second_wave, drop)]
    assert again == first + second


def test_one_account_gets_one_place_however_many_devices_ask_at_once(seed_app, redis_shop):
    drop = room_drop(seed_app, edition_size=2, held_by_others=2)
    customer = seed.create_customers(seed_app, 1)[0]
    devices = login_all(redis_shop.address, [customer] * 4, page="/account/")
    others = shoppers(seed_app, redis_shop, 10)

    answers = burst_visits(redis_shop, devices * 3 + others, drop)

    mine = {place_of(r) for r in answers[:12]}
    theirs = [place_of(r) for r in answers[12:]]
    assert len(mine) == 1
    assert sorted(mine | set(theirs)) == list(range(1, 12))
    assert {place_of(visit(device, drop)) for device in devices} == mine


def test_a_customer_who_skipped_the_line_cannot_buy(seed_app, redis_shop):
    drop = room_drop(seed_app, edition_size=20, limit=1)
    admitted = shoppers(seed_app, redis_shop, 3)
    for session in admitted:
        assert visit(session, drop).status == 303  # stock and turns enough: let in at once
    skippers = shoppers(seed_app, redis_shop, 12)
    for skipper, lender in zip(skippers[:3], admitted, strict=True):  # someone else's pass
        skipper.cookies[f"smallbatch_line_{drop.drop_id}"] = lender.cookies[
            f"smallbatch_line_{drop.drop_id}"
        ]

    outcome = bursts.burst(
        redis_shop.address,
        [s.buy_request(drop.batch_id) for s in skippers + admitted],
    )

    assert_no_server_errors(outcome.responses, redis_shop)
    assert [r.status for r in outcome.responses] == [403] * 12 + [303] * 3
    assert all(WAIT_YOUR_TURN in r.text for r in outcome.responses[:12])
    assert stock(seed_app, drop.batch_id) == (20, 0, 3)
    assert violations(seed_app, drop.batch_id) == []


def test_turns_stop_at_zero_stock_and_resume_for_as_many_as_the_sweeper_releases(
    seed_app, redis_app, redis_shop
):
    drop = room_drop(seed_app, edition_size=3, limit=1)
    crowd = shoppers(seed_app, redis_shop, 7)
    answers = [visit(session, drop) for session in crowd]
    assert [a.status for a in answers] == [303] * 3 + [200] * 4
    for session in crowd[:3]:
        assert session.buy(drop.batch_id).status == 303
    assert stock(seed_app, drop.batch_id) == (3, 0, 3)

    stalled = burst_visits(redis_shop, crowd[3:], drop)
    assert [place_of(r) for r in stalled] == [4, 5, 6, 7]  # every unit held: nobody is called
    time.sleep(page_cache.STATE_SECONDS + 0.1)  # the shared numbers are at most this old
    stalled = burst_visits(redis_shop, crowd[3:], drop)
    assert [place_of(r) for r in stalled] == [4, 5, 6, 7]
    assert all("Every unit is held by someone paying right now" in r.text for r in stalled)

    assert expire_holds(redis_app, drop.batch_id, 2) == 2
    time.sleep(waiting_room.USED_GRACE_MS / 1000)  # the buyers' used turns have ended
    resumed = burst_visits(redis_shop, crowd[3:], drop)

    assert [r.status for r in resumed] == [303, 303, 200, 200]  # exactly the two freed
    assert [place_of(r) for r in resumed[2:]] == [6, 7]
    for session in crowd[3:5]:
        assert session.buy(drop.batch_id).status == 303
    assert stock(seed_app, drop.batch_id) == (3, 0, 3)
    assert violations(seed_app, drop.batch_id) == []


def test_everybody_waiting_is_told_at_once_when_the_last_unit_is_sold(
    seed_app, redis_app, redis_shop
):
    drop = room_drop(seed_app, edition_size=2, limit=1)
    crowd = shoppers(seed_app, redis_shop, 14)
    buyers, waiting = crowd[:2], crowd[2:]
    assert [visit(s, drop).status for s in buyers] == [303, 303]
    assert {visit(s, drop).status for s in waiting} == {200}
    for session in buyers:
        assert session.buy(drop.batch_id).status == 303
    with redis_app.app_context():  # as the webhook does: the last sale drops the shared numbers
        for order in db.session.query(Order).filter_by(batch_id=drop.batch_id):
            inventory.confirm(order, now=clock.now())
        db.session.commit()
        db.session.remove()

    told = burst_visits(redis_shop, waiting, drop)

    assert [r.status for r in told] == [409] * 12
    assert all(SOLD_OUT in r.text for r in told)
    assert stock(seed_app, drop.batch_id) == (2, 2, 0)


def test_the_line_survives_a_restart_of_the_app(seed_app, race_database_url, emulator, redis_env):
    with servers.start_gunicorn(
        race_database_url, workers=2, threads=2, stripe_api_base=emulator.url, extra_env=redis_env
    ) as server:
        drop = room_drop(seed_app, edition_size=1, limit=1)
        crowd = shoppers(seed_app, server, 4)
        before = [visit(session, drop) for session in crowd]
        assert [r.status for r in before] == [303, 200, 200, 200]
    with servers.start_gunicorn(
        race_database_url, workers=2, threads=2, stripe_api_base=emulator.url, extra_env=redis_env
    ) as restarted:
        for session in crowd:
            session.address = restarted.address
        after = [visit(session, drop) for session in crowd[1:]]
        assert [place_of(r) for r in after] == [2, 3, 4]
        assert crowd[2].buy(drop.batch_id).status == 403  # still not their turn
        assert crowd[0].buy(drop.batch_id).status == 303  # the pass outlived the restart


def test_the_room_works_in_one_process_without_redis(seed_app, race_database_url, emulator):
    with servers.start_gunicorn(
        race_database_url, workers=1, threads=THREADS, stripe_api_base=emulator.url
    ) as server:
        drop = room_drop(seed_app, edition_size=2, held_by_others=2)
        crowd = shoppers(seed_app, server, 10)
        customer = seed.create_customers(seed_app, 1)[0]
        devices = login_all(server.address, [customer] * 3, page="/account/")

        answers = burst_visits(server, crowd + devices, drop)

        places = [place_of(r) for r in answers]
        assert len(set(places[10:])) == 1
        assert sorted(set(places)) == list(range(1, 12))
        assert crowd[0].buy(drop.batch_id).status == 403
        assert expire_holds(seed_app, drop.batch_id, 1) == 1
        time.sleep(page_cache.STATE_SECONDS + 0.1)  # the server's own numbers: at most this old
        sessions = crowd + devices
        front = sessions[places.index(1)]
        assert visit(front, drop).status == 303
        assert front.buy(drop.batch_id).status == 303
        assert violations(seed_app, drop.batch_id) == []

"""The sold-out answer in one round trip (shop/claims.py): with Redis on PostgreSQL, a session's
claim — its account's current token, as a digest, and the lines the account stands in — is
mirrored in Redis and read in the buy's one MGET, so a crowd's refusal sends PostgreSQL
nothing. The mirror is written again after every commit that changes it (a logout everywhere,
a reset, joining or leaving a line, an offer settled) and a newer read always wins: a session
ended anywhere is never refused from an old mirror, and the page always says where the
customer stands."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import redis

from shop import claims, clock, page_cache, recovery, tokens, users, waitlist
from shop.extensions import db
from shop.models import Order, User, WaitlistPlace
from shop.models.order import PAID, WAITLIST
from shop.models.waitlist import OFFERED
from testkit.factories import PASSWORD
from tests.integration.test_fast_path import flask_requests
from tests.integration.test_sold_out_fast_path import SoldOut, _fresh, _join_waitlist, _sold_out
from tests.support import redis_server
from tests.support.wire import statements_of

IN_LINE = "You're on the waitlist for this batch."


@pytest.fixture
def database_url(postgresql_url):
    """PostgreSQL only: on SQLite nothing is mirrored (the claim is one local read there)."""
    return postgresql_url


@pytest.fixture
def app_overrides():
    with redis_server.shared_store("redis") as overrides:
        yield overrides


def _key(app, customer_id: int) -> str:
    with app.app_context():
        return claims.key(customer_id)


def _mirror(app, customer_id: int) -> bytes | None:
    with redis.Redis.from_url(app.config["REDIS_URL"]) as client:
        return client.get(_key(app, customer_id))


def _buy_watched(app, sold: SoldOut):
    """A buy of the sold-out batch, with what reached Flask and what reached PostgreSQL."""
    db.session.remove()

    def buy():
        with flask_requests(app) as through_flask, statements_of(db.engine) as statements:
            answer = sold.buy()
        return answer, through_flask, statements

    return _fresh(sold.refuse, buy)[1]


def _customer(customer_id: int) -> User:
    return db.session.get_one(User, customer_id)


def test_a_refusal_before_flask_reads_the_claim_from_redis_and_sends_postgresql_nothing(app):
    sold = _sold_out(app)
    customer_id = sold.customer.id
    first, _, first_statements = _buy_watched(app, sold)  # no mirror yet: PostgreSQL, then kept

    answer, through_flask, statements = _buy_watched(app, sold)

    assert first.status_code == 409 and len(first_statements) == 1
    assert answer.status_code == 409 and through_flask == [] and statements == []
    assert "Sold out" in answer.text and "Join the waitlist" in answer.text
    assert _mirror(app, customer_id) is not None


def test_the_mirror_keeps_a_digest_of_the_token_never_the_token(app):
    sold = _sold_out(app)
    customer_id = sold.customer.id
    _buy_watched(app, sold)

    mirrored = _mirror(app, customer_id).decode()

    token = _customer(customer_id).session_token
    assert token not in mirrored
    assert re.fullmatch(r"\d+ [0-9a-f]{64} ", mirrored)


def test_logging_in_mirrors_the_claim_so_the_first_refusal_sends_postgresql_nothing(app):
    sold = _sold_out(app)
    email = sold.customer.email
    client = sold.client
    client.post("/account/logout", data={"csrf_token": sold.csrf})
    form = client.get("/account/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form).group(1)
    redis_server.delete_keys(claims.redis_prefix(app.config["RATELIMIT_KEY_PREFIX"]))
    logged_in = client.post(
        "/account/login",
        data={"email": email, "password": PASSWORD, "csrf_token": csrf},
    )
    assert logged_in.status_code == 303
    sold.csrf = re.search(
        r'name="csrf_token"[^>]*value="([^"]+)"',
        client.get(f"/drops/{sold.drop.slug}").get_data(as_text=True),
    ).group(1)

    answer, through_flask, statements = _buy_watched(app, sold)

    assert answer.status_code == 409 and through_flask == [] and statements == []


@pytest.mark.parametrize("ended_by", ["logout everywhere", "a password reset", "a direct write"])
def test_a_session_ended_anywhere_is_never_refused_from_its_old_mirror(app, ended_by):
    sold = _sold_out(app)
    customer_id = sold.customer.id
    _buy_watched(app, sold)  # the mirror kept
    customer = _customer(customer_id)
    if ended_by == "logout everywhere":
        users.revoke_sessions(customer)
    elif ended_by == "a password reset":
        link = tokens.sign(
            recovery.PURPOSE, {"u": customer.id, "p": recovery._fingerprint(customer.password_hash)}
        )
        recovery.reset(link, "a brand new passphrase", now=clock.now())
    else:
        customer.session_token = "rotated-elsewhere"
    db.session.commit()

    answer, through_flask, _ = _buy_watched(app, sold)

    assert len(through_flask) == 1  # Flask: the claim no longer holds
    assert answer.status_code == 303 and "/account/login" in answer.location


def test_joining_and_leaving_the_line_show_on_the_next_refusal_from_the_mirror(app):
    sold = _sold_out(app)
    customer_id = sold.customer.id
    _buy_watched(app, sold)  # the mirror kept: not in line

    assert _join_waitlist(sold, sold.csrf).status_code == 303
    _buy_watched(app, sold)  # Flask's: it shows the join's message (and keeps the in-line page)
    joined, through_flask, statements = _buy_watched(app, sold)
    assert IN_LINE in joined.text and "Join the waitlist" not in joined.text
    assert through_flask == [] and statements == []

    place = db.session.scalars(
        db.select(WaitlistPlace).where(WaitlistPlace.customer_id == customer_id)
    ).one()
    waitlist.leave(place, now=clock.now())
    db.session.commit()
    left, through_flask, statements = _buy_watched(app, sold)
    assert IN_LINE not in left.text and "Join the waitlist" in left.text
    assert through_flask == [] and statements == []


def test_an_offer_settled_by_the_sweeper_takes_the_batch_off_the_mirror(app):
    sold = _sold_out(app)
    customer_id = sold.customer.id
    assert _join_waitlist(sold, sold.csrf).status_code == 303
    _buy_watched(app, sold)
    place = db.session.scalars(
        db.select(WaitlistPlace).where(WaitlistPlace.customer_id == customer_id)
    ).one()
    order = db.session.scalars(db.select(Order)).first()  # another's hold, made this offer's
    order.kind, order.state = WAITLIST, PAID
    place.state, place.order_id, place.offered_at = OFFERED, order.id, clock.now()
    db.session.commit()
    assert IN_LINE in _buy_watched(app, sold)[0].text  # offered: still in line

    waitlist.offer_freed(clock.now() + timedelta(seconds=1))  # the sweeper: the offer was paid

    answer, through_flask, statements = _buy_watched(app, sold)
    assert IN_LINE not in answer.text
    assert through_flask == [] and statements == []


def test_a_read_older_than_the_mirror_never_replaces_it(app):
    """A refusal that read the account before a logout everywhere and writes after it cannot
    put the old token back: the newer read wins whichever is written last."""
    sold = _sold_out(app)
    customer_id = sold.customer.id
    _buy_watched(app, sold)
    old = _mirror(app, customer_id)
    users.revoke_sessions(_customer(customer_id))
    db.session.commit()
    newer = _mirror(app, customer_id)
    assert newer != old

    with app.app_context():
        claims._store().write({customer_id: (int(old.split()[0]), old.decode())})

    assert _mirror(app, customer_id) == newer
    answer, through_flask, _ = _buy_watched(app, sold)
    assert len(through_flask) == 1 and answer.status_code == 303


def test_a_buy_reads_the_room_the_facts_and_the_claim_in_one_command(app):
    sold = _sold_out(app)
    customer_id = sold.customer.id
    _buy_watched(app, sold)
    key = _key(app, customer_id)

    def buy():
        with redis_server.commands_sent(app.config["RATELIMIT_KEY_PREFIX"]) as commands:
            answer = sold.buy()
        return answer, commands

    answer, commands = _fresh(sold.refuse, buy)[1]

    assert answer.status_code == 409
    gone = page_cache.nothing_left_name(sold.batch_id)
    reads = [c for c in commands if key in c or gone in c]
    assert len(reads) == 1, commands
    assert reads[0].split()[0] == "MGET" and key in reads[0] and gone in reads[0]


def test_a_value_that_is_not_a_mirror_is_asked_of_postgresql_and_replaced(app):
    sold = _sold_out(app)
    customer_id = sold.customer.id
    with redis.Redis.from_url(app.config["REDIS_URL"]) as client:
        client.set(_key(app, customer_id), b"not a mirror")

    answer, through_flask, statements = _buy_watched(app, sold)

    assert answer.status_code == 409 and through_flask == [] and len(statements) == 1
    assert re.fullmatch(rb"\d+ [0-9a-f]{64} ", _mirror(app, customer_id))

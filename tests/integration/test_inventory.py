from datetime import timedelta

import psycopg._queries
import pytest
from sqlalchemy import select

from shop import catalog, inventory
from shop.auth import SessionClaim
from shop.errors import (
    DropNotLive,
    InvalidQuantity,
    InvalidState,
    LimitReached,
    LoginRequired,
    NotFound,
    SoldOut,
)
from shop.extensions import db
from shop.models import Allotment, Batch, Order, Unit
from shop.models.drop import CLOSED, DRAFT, SCHEDULED
from shop.models.order import CANCELLED, EXPIRED, HELD, PAID
from testkit.factories import (
    AFTER_DROP,
    AT_DROP,
    BEFORE_DROP,
    OPENS_AT,
    make_batch,
    make_customer,
    make_drop,
)


def _fresh(batch: Batch) -> Batch:
    db.session.expire_all()
    return db.session.get(Batch, batch.id)


def test_a_hold_takes_stock_and_copies_the_price(app):
    batch = make_batch(edition_size=10, price=4200)
    customer = make_customer()
    order = inventory.hold(batch.id, 2, customer=customer, now=AT_DROP)
    db.session.commit()
    assert order.state == HELD and order.quantity == 2
    assert order.unit_price == 4200 and order.amount == 8400 and order.currency == "usd"
    assert order.hold_expires_at == AT_DROP + timedelta(minutes=10)
    assert _fresh(batch).held == 2 and _fresh(batch).remaining == 8


def test_a_hold_for_a_session_token_that_was_rotated_is_refused_and_takes_nothing(app):
    batch = make_batch(edition_size=10)
    customer = make_customer()
    db.session.commit()
    stale = SessionClaim(customer.id, "a-token-from-before-the-logout")
    with pytest.raises(LoginRequired):
        inventory.reserve(batch.id, 1, customer=stale, now=AT_DROP)
    db.session.rollback()
    assert _fresh(batch).held == 0
    assert db.session.scalars(select(Allotment)).all() == []
    current = SessionClaim(customer.id, customer.session_token)
    assert inventory.reserve(batch.id, 1, customer=current, now=AT_DROP).order_id


def test_a_batch_that_does_not_exist_cannot_be_held(app):
    customer = make_customer()
    db.session.commit()
    for batch_id in (987_654, 0, -1, 2**31):
        with pytest.raises(NotFound):
            inventory.reserve(batch_id, 1, customer=customer, now=AT_DROP)


def test_the_last_unit_cannot_be_sold_twice(app):
    batch = make_batch(edition_size=1, limit=1)
    inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP)
    db.session.commit()
    with pytest.raises(SoldOut) as error:
        inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP)
    assert error.value.remaining == 0
    db.session.rollback()
    assert _fresh(batch).held == 1


def test_sold_out_says_how_many_are_left_and_returns_the_allotment(app):
    batch = make_batch(edition_size=3, limit=3)
    inventory.hold(batch.id, 2, customer=make_customer(), now=AT_DROP)
    customer = make_customer()
    with pytest.raises(SoldOut) as error:
        inventory.hold(batch.id, 2, customer=customer, now=AT_DROP)
    assert error.value.remaining == 1
    db.session.commit()
    allotment = db.session.get(Allotment, (customer.id, batch.id))
    assert allotment is None or allotment.units == 0
    assert inventory.hold(batch.id, 1, customer=customer, now=AT_DROP).quantity == 1


@pytest.mark.parametrize(("limit", "asked", "allowed"), [(2, 1, 0), (3, 2, 1)])
def test_a_customer_cannot_hold_more_than_the_batch_limit(app, limit, asked, allowed):
    """And is told how many more they may still buy."""
    batch = make_batch(limit=limit)
    customer = make_customer()
    inventory.hold(batch.id, 2, customer=customer, now=AT_DROP)
    with pytest.raises(LimitReached) as error:
        inventory.hold(batch.id, asked, customer=customer, now=AT_DROP)
    assert error.value.allowed == allowed
    db.session.commit()
    assert _fresh(batch).held == 2


@pytest.mark.parametrize("quantity", [0, -1, 3, 1.5, "1", True, None])
def test_a_quantity_outside_one_to_the_limit_is_refused(app, quantity):
    batch = make_batch(limit=2)
    with pytest.raises(InvalidQuantity):
        inventory.hold(batch.id, quantity, customer=make_customer(), now=AT_DROP)
    assert _fresh(batch).held == 0


@pytest.mark.parametrize(
    ("state", "now"),
    [
        (DRAFT, AT_DROP),
        (CLOSED, AT_DROP),
        (SCHEDULED, BEFORE_DROP),
        (SCHEDULED, AFTER_DROP),
    ],
)
def test_nothing_is_held_when_the_drop_is_not_live(app, state, now):
    batch = make_batch(drop=make_drop(state=state))
    with pytest.raises(DropNotLive):
        inventory.hold(batch.id, 1, customer=make_customer(), now=now)
    assert _fresh(batch).held == 0


def test_a_scheduled_drop_opens_on_the_second_without_a_job(app):
    batch = make_batch(drop=make_drop(state=SCHEDULED))
    with pytest.raises(DropNotLive):
        inventory.hold(batch.id, 1, customer=make_customer(), now=OPENS_AT - timedelta(seconds=1))
    order = inventory.hold(batch.id, 1, customer=make_customer(), now=OPENS_AT)
    assert order.state == HELD


def test_a_batch_outside_any_drop_cannot_be_held(app):
    batch = make_batch(live=False)
    with pytest.raises(DropNotLive):
        inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP)


def test_release_returns_stock_and_allotment_exactly_once(app):
    batch = make_batch(limit=2)
    customer = make_customer()
    order = inventory.hold(batch.id, 2, customer=customer, now=AT_DROP)
    assert inventory.release(order, EXPIRED, now=AT_DROP) is True
    assert inventory.release(order, EXPIRED, now=AT_DROP) is False
    db.session.commit()
    assert _fresh(batch).held == 0
    assert db.session.get(Allotment, (customer.id, batch.id)).units == 0
    assert db.session.get(Order, order.id).state == EXPIRED


def test_a_customer_can_buy_again_after_their_hold_is_cancelled(app):
    batch = make_batch(limit=2)
    customer = make_customer()
    order = inventory.hold(batch.id, 2, customer=customer, now=AT_DROP)
    inventory.release(order, CANCELLED, now=AT_DROP)
    assert inventory.hold(batch.id, 2, customer=customer, now=AT_DROP).quantity == 2


def test_confirm_assigns_the_next_serials_once(app):
    batch = make_batch(edition_size=10, limit=3)
    first = inventory.hold(batch.id, 3, customer=make_customer(), now=AT_DROP)
    second = inventory.hold(batch.id, 2, customer=make_customer(), now=AT_DROP)
    assert inventory.confirm(second, now=AT_DROP) is True
    assert inventory.confirm(first, now=AT_DROP) is True
    assert inventory.confirm(first, now=AT_DROP) is False
    db.session.commit()
    assert [u.serial for u in db.session.get(Order, second.id).units] == [1, 2]
    assert [u.serial for u in db.session.get(Order, first.id).units] == [3, 4, 5]
    fresh = _fresh(batch)
    assert (fresh.sold, fresh.held) == (5, 0)
    codes = db.session.scalars(select(Unit.certificate_code)).all()
    assert len(set(codes)) == 5 and all(len(code) >= 16 for code in codes)


def test_a_released_order_cannot_be_confirmed(app):
    batch = make_batch()
    order = inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP)
    inventory.release(order, EXPIRED, now=AT_DROP)
    assert inventory.confirm(order, now=AT_DROP) is False
    assert db.session.get(Order, order.id).state == EXPIRED


def test_a_paid_order_cannot_be_released(app):
    batch = make_batch()
    order = inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP)
    inventory.confirm(order, now=AT_DROP)
    assert inventory.release(order, EXPIRED, now=AT_DROP) is False
    db.session.commit()
    assert _fresh(batch).sold == 1


def test_rehold_takes_units_back_when_stock_remains(app):
    batch = make_batch(edition_size=5)
    order = inventory.hold(batch.id, 2, customer=make_customer(), now=AT_DROP)
    inventory.release(order, EXPIRED, now=AT_DROP)
    inventory.rehold(order, now=AT_DROP)
    assert order.state == HELD
    assert inventory.confirm(order, now=AT_DROP)
    assert db.session.get(Order, order.id).state == PAID


def test_rehold_fails_cleanly_when_the_units_were_sold_to_someone_else(app):
    batch = make_batch(edition_size=2)
    order = inventory.hold(batch.id, 2, customer=make_customer(), now=AT_DROP)
    inventory.release(order, EXPIRED, now=AT_DROP)
    inventory.hold(batch.id, 2, customer=make_customer(), now=AT_DROP)
    with pytest.raises(SoldOut):
        inventory.rehold(order, now=AT_DROP)
    db.session.commit()
    assert db.session.get(Order, order.id).state == EXPIRED
    assert _fresh(batch).held == 2


def test_rehold_refuses_an_order_that_is_not_released(app):
    order = inventory.hold(make_batch().id, 1, customer=make_customer(), now=AT_DROP)
    with pytest.raises(InvalidState):
        inventory.rehold(order, now=AT_DROP)


def test_allowed_quantity_is_the_smaller_of_limit_left_and_stock_left(app):
    batch = make_batch(edition_size=3, limit=2)
    customer = make_customer()
    assert catalog.allowed_quantity(batch, customer) == 2
    inventory.hold(batch.id, 1, customer=customer, now=AT_DROP)
    inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP)
    db.session.expire_all()
    assert catalog.allowed_quantity(db.session.get(Batch, batch.id), customer) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_psycopg_sends_the_hold_statement_without_parsing_it_on_each_buy(app, monkeypatch):
    """psycopg keeps its parse of a ``%(name)s`` statement only under 4 KB; the hold statement
    is longer, so it goes with PostgreSQL's own ``$n`` placeholders, which psycopg never parses
    (a parse cost a buy ~78 µs of CPU)."""
    batch = make_batch(edition_size=10)
    customers = [make_customer() for _ in range(3)]
    db.session.commit()
    parsed: list[bytes] = []
    parse = psycopg._queries._query2pg_nocache
    monkeypatch.setattr(
        psycopg._queries,
        "_query2pg_nocache",
        lambda query, *args: parsed.append(query) or parse(query, *args),
    )
    for customer in customers:
        claim = SessionClaim(customer.id, customer.session_token)
        assert inventory.reserve(batch.id, 1, customer=claim, now=AT_DROP).order_id

    assert [q for q in parsed if b"WITH buyer AS" in q] == []
    assert _fresh(batch).held == 3

"""``inventory.hold_for``: a personal hold (a draw's win, a waitlist's offer) is a hold like any
other — the same stock, limit and release rules — given to a customer the shop chose."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from shop import clock, inventory, ledger, payments, sweeper
from shop.errors import LimitReached
from shop.extensions import db
from shop.models import Allotment, Batch, HeldByAccount, Order
from shop.models.drop import CLOSED
from shop.models.order import CROWD, DRAW, EXPIRED, HELD, PAID, WAITLIST
from testkit.factories import AT_DROP, make_batch, make_customer, make_drop
from tests.support.stripe import live_batch, sign_in, stripe_settings

UNTIL = AT_DROP + timedelta(hours=24)


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


def _fresh(batch: Batch) -> Batch:
    db.session.expire_all()
    return db.session.get(Batch, batch.id)


def _allotment(customer_id: int, batch_id: int) -> int:
    return db.session.scalar(
        select(Allotment.units).where(
            Allotment.customer_id == customer_id, Allotment.batch_id == batch_id
        )
    )


def _violations(batch: Batch) -> list[str]:
    db.session.flush()
    return ledger.violations(db.session.connection(), batch.id)


def test_a_personal_hold_takes_stock_for_its_customer_until_its_deadline(app):
    batch = make_batch(edition_size=10, price=4200, limit=3)
    customer = make_customer()
    kind = DRAW

    order = inventory.hold_for(customer.id, batch.id, 2, kind=kind, until=UNTIL, now=AT_DROP)
    db.session.commit()

    assert order.state == HELD and order.kind == kind and order.customer_id == customer.id
    assert order.quantity == 2 and order.unit_price == 4200 and order.amount == 8400
    assert order.hold_expires_at == UNTIL and order.created_at == AT_DROP
    assert _fresh(batch).held == 2 and _allotment(customer.id, batch.id) == 2
    held_by = db.session.get(HeldByAccount, (batch.drop_id, customer.id))
    assert held_by.units == 2
    assert _violations(batch) == []


def test_a_crowd_hold_is_of_the_kind_crowd(app):
    batch = make_batch()
    order = inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP)
    assert order.kind == CROWD


def test_a_personal_hold_is_refused_when_too_few_units_are_left_and_takes_nothing(app):
    batch = make_batch(edition_size=3, limit=5)
    first, second = make_customer(), make_customer()
    inventory.hold(batch.id, 2, customer=first, now=AT_DROP)

    assert inventory.hold_for(second.id, batch.id, 2, kind=DRAW, until=UNTIL, now=AT_DROP) is None

    assert _fresh(batch).held == 2 and _allotment(second.id, batch.id) is None
    assert inventory.hold_for(second.id, batch.id, 1, kind=DRAW, until=UNTIL, now=AT_DROP)
    assert _fresh(batch).held == 3 and _violations(batch) == []


def test_the_limit_counts_a_crowd_hold_against_a_personal_hold(app):
    batch = make_batch(edition_size=10, limit=2)
    customer = make_customer()
    inventory.hold(batch.id, 1, customer=customer, now=AT_DROP)

    refused = inventory.hold_for(customer.id, batch.id, 2, kind=DRAW, until=UNTIL, now=AT_DROP)

    assert refused is None
    assert _fresh(batch).held == 1 and _allotment(customer.id, batch.id) == 1
    assert _violations(batch) == []


def test_the_limit_counts_a_personal_hold_against_a_crowd_buy(app):
    batch = make_batch(edition_size=10, limit=2)
    customer = make_customer()
    inventory.hold_for(customer.id, batch.id, 2, kind=DRAW, until=UNTIL, now=AT_DROP)
    db.session.commit()

    with pytest.raises(LimitReached):
        inventory.hold(batch.id, 1, customer=customer, now=AT_DROP)

    db.session.rollback()
    assert _fresh(batch).held == 2


def test_a_personal_hold_needs_no_live_drop_nor_a_signed_in_buyer(app):
    drop = make_drop(state=CLOSED)
    batch = make_batch(drop=drop)
    customer = make_customer()
    customer.session_token = "rotated-meanwhile"

    order = inventory.hold_for(customer.id, batch.id, 1, kind=DRAW, until=UNTIL, now=AT_DROP)

    assert order is not None and order.state == HELD


@pytest.mark.parametrize(
    ("kind", "quantity"), [(CROWD, 1), ("lottery", 1), (DRAW, 0), (DRAW, -1), (DRAW, True)]
)
def test_a_personal_hold_of_an_unknown_kind_or_no_units_is_a_programming_error(app, kind, quantity):
    batch = make_batch()
    with pytest.raises(ValueError, match="personal hold"):
        inventory.hold_for(
            make_customer().id, batch.id, quantity, kind=kind, until=UNTIL, now=AT_DROP
        )


def test_releasing_a_personal_hold_returns_its_stock_limit_and_units_across_the_drop(app):
    batch = make_batch(edition_size=4, limit=2)
    customer = make_customer()
    order = inventory.hold_for(customer.id, batch.id, 2, kind=DRAW, until=UNTIL, now=AT_DROP)

    assert inventory.release(order, EXPIRED, now=UNTIL)

    assert _fresh(batch).held == 0 and _allotment(customer.id, batch.id) == 0
    assert db.session.get(HeldByAccount, (batch.drop_id, customer.id)).units == 0
    assert _violations(batch) == []


def test_a_waitlist_offer_holds_only_units_set_aside_for_the_waitlist(app):
    batch = make_batch(edition_size=2, limit=2)
    customer = make_customer()
    assert (
        inventory.hold_for(customer.id, batch.id, 1, kind=WAITLIST, until=UNTIL, now=AT_DROP)
        is None
    )
    crowd = inventory.hold(batch.id, 2, customer=make_customer(), now=AT_DROP)
    assert inventory.join_line(batch.id)
    inventory.release(crowd, EXPIRED, now=AT_DROP)  # someone waits: set aside, not free
    assert (_fresh(batch).reserved, _fresh(batch).remaining) == (2, 0)

    order = inventory.hold_for(customer.id, batch.id, 1, kind=WAITLIST, until=UNTIL, now=AT_DROP)

    assert order.kind == WAITLIST and order.state == HELD
    assert (_fresh(batch).held, _fresh(batch).reserved) == (1, 1)


def test_a_paid_personal_hold_gets_the_next_serials(app):
    batch = make_batch(edition_size=4, limit=2)
    inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP)
    order = inventory.hold_for(make_customer().id, batch.id, 2, kind=DRAW, until=UNTIL, now=AT_DROP)

    assert inventory.confirm(order, now=AT_DROP + timedelta(hours=1))

    assert order.state == PAID and [unit.serial for unit in order.units] == [1, 2]
    assert _violations(batch) == []


def test_the_sweeper_releases_a_personal_hold_once_its_deadline_passed(app, emulator):
    batch = live_batch(edition_size=3)
    customer = make_customer()
    now = clock.now()
    order = inventory.hold_for(
        customer.id, batch.id, 1, kind=DRAW, until=now + timedelta(hours=2), now=now
    )
    db.session.commit()

    assert sweeper.sweep(now + timedelta(hours=1))["released"] == 0
    assert sweeper.sweep(now + timedelta(hours=2))["released"] == 1

    db.session.rollback()
    assert db.session.get(Order, order.id).state == EXPIRED
    assert _fresh(batch).held == 0


def test_a_customer_pays_a_personal_hold_through_checkout_like_any_other(app, client, emulator):
    batch = live_batch(edition_size=3, price=4200)
    customer = make_customer()
    now = clock.now()
    order = inventory.hold_for(
        customer.id, batch.id, 1, kind=DRAW, until=now + timedelta(hours=30), now=now
    )
    db.session.commit()
    sign_in(client, customer)

    response = client.get(f"/checkout/orders/{order.public_id}/pay")

    assert response.status_code == 303
    db.session.rollback()
    session_id = db.session.get(Order, order.id).checkout_session_id
    session = emulator.session(session_id)
    assert response.headers["Location"] == session["url"] and session["amount_total"] == 4200
    # Stripe keeps a session at most a day: a 30-hour hold's session ends within one.
    assert now.timestamp() + 1800 <= session["expires_at"] <= now.timestamp() + 86400
    emulator.complete(session_id)
    page = client.get(f"/checkout/success?session_id={session_id}")
    assert page.status_code == 200
    db.session.rollback()
    assert db.session.get(Order, order.id).state == PAID


def test_someone_elses_personal_hold_cannot_be_paid(app, client, emulator):
    batch = live_batch(edition_size=3)
    now = clock.now()
    order = inventory.hold_for(
        make_customer().id, batch.id, 1, kind=DRAW, until=now + timedelta(hours=1), now=now
    )
    someone_else = make_customer()
    db.session.commit()
    sign_in(client, someone_else)

    assert client.get(f"/checkout/orders/{order.public_id}/pay").status_code == 404


@pytest.mark.parametrize("hours", [0.2, 1, 22, 23, 23.4, 24, 30, 47, 100])
def test_a_session_never_asks_stripe_for_more_than_a_day_nor_less_than_half_an_hour(app, hours):
    hold_end = AT_DROP + timedelta(hours=hours)
    for minutes in range(0, 60 * int(hours) + 1, 7):  # every attempt the hold allows
        now = AT_DROP + timedelta(minutes=minutes)
        expires_at, step = payments.session_expiry(hold_end, now)
        assert timedelta(minutes=30) < expires_at - now <= timedelta(hours=24)
        assert (step == 0) == (expires_at == hold_end + payments.SESSION_LIFETIME)
    if hours <= 22:
        assert payments.session_expiry(hold_end, AT_DROP)[1] == 0


def test_a_retry_gets_the_same_session_time_unless_it_crossed_into_the_next_step(app):
    hold_end = AT_DROP + timedelta(hours=24)
    first = payments.session_expiry(hold_end, AT_DROP)
    assert payments.session_expiry(hold_end, AT_DROP + timedelta(minutes=50)) == first
    later = payments.session_expiry(hold_end, AT_DROP + timedelta(minutes=62))
    assert later[1] == first[1] - 1 == 0

"""Hoarding made costly: caps on what one account and one network hold across a drop, and a
cooling-off for accounts whose holds keep lapsing (SECURITY.md, "Hoarding"). On SQLite and
PostgreSQL, with a frozen clock passed as ``now=``."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from shop import clock, inventory, limits
from shop.errors import (
    CoolingOff,
    DropCapReached,
    DropNotLive,
    InvalidQuantity,
    NetworkCapReached,
    SoldOut,
)
from shop.extensions import db
from shop.models import Batch, HeldByAccount, HeldByNetwork, Order
from shop.models.order import CANCELLED, EXPIRED, HELD
from testkit.factories import AT_DROP, BEFORE_DROP, make_batch, make_customer, make_drop
from tests.support.stripe import live_batch, sign_in

# Two client networks (hashed as the view would); the caps count each on its own.
OFFICE = "hold-network-office"
HOME = "hold-network-home"


@pytest.fixture
def app_overrides():
    return {"SHOP_DROP_HOLD_CAP_PER_NETWORK": 8}


def drop_of(count: int, *, limit: int = 2, edition_size: int = 20) -> list[Batch]:
    drop = make_drop()
    batches = [
        make_batch(drop=drop, number=n, limit=limit, edition_size=edition_size)
        for n in range(1, count + 1)
    ]
    db.session.commit()
    return batches


def held(batch_id: int) -> int:
    return db.session.scalar(select(Batch.held).where(Batch.id == batch_id))


def orders_of(customer) -> list[Order]:
    return list(db.session.scalars(select(Order).where(Order.customer_id == customer.id)))


def lapse(order: Order, *, at) -> None:
    """The sweeper's end of an unpaid hold: released as expired."""
    assert inventory.release(order, EXPIRED, now=at)
    db.session.commit()


# --- the cap per account -------------------------------------------------------------------


def test_an_account_holds_at_most_six_units_across_a_drops_batches(app):
    batches = drop_of(4)
    customer = make_customer()
    for batch in batches[:3]:
        inventory.hold(batch.id, 2, customer=customer, now=AT_DROP)
    db.session.commit()

    with pytest.raises(DropCapReached) as refused:
        inventory.hold(batches[3].id, 1, customer=customer, now=AT_DROP)

    assert refused.value.status == 409 and refused.value.cap == 6
    assert "one account holds at most 6 units of a drop at once" in refused.value.message
    assert "try again in 10 minutes, when your first hold runs out" in refused.value.message
    db.session.rollback()
    assert held(batches[3].id) == 0 and len(orders_of(customer)) == 3


def test_a_hold_that_would_pass_the_cap_says_how_many_more_fit(app):
    batches = drop_of(4)
    customer = make_customer()
    for batch in batches[:2]:
        inventory.hold(batch.id, 2, customer=customer, now=AT_DROP)
    inventory.hold(batches[2].id, 1, customer=customer, now=AT_DROP)

    with pytest.raises(DropCapReached) as refused:
        inventory.hold(batches[3].id, 2, customer=customer, now=AT_DROP)

    assert refused.value.allowed == 1
    assert refused.value.message.startswith("You can hold 1 more of this drop right now")
    inventory.hold(batches[3].id, 1, customer=customer, now=AT_DROP)  # the one that fits


@pytest.mark.parametrize("ends", ["paid", "cancelled", "lapsed"])
def test_a_hold_that_ends_makes_room_under_the_cap(app, ends):
    batches = drop_of(4)
    customer = make_customer()
    first, *_ = [
        inventory.hold(batch.id, 2, customer=customer, now=AT_DROP) for batch in batches[:3]
    ]
    if ends == "paid":
        assert inventory.confirm(first, now=AT_DROP + timedelta(minutes=1))
    else:
        assert inventory.release(first, CANCELLED if ends == "cancelled" else EXPIRED, now=AT_DROP)

    inventory.hold(batches[3].id, 2, customer=customer, now=AT_DROP + timedelta(minutes=2))

    assert db.session.get(HeldByAccount, (batches[0].drop_id, customer.id)).units == 6


def test_the_cap_never_stops_an_account_holding_one_batchs_own_limit(app):
    [generous] = drop_of(1, limit=10)
    customer = make_customer()

    inventory.hold(generous.id, 10, customer=customer, now=AT_DROP)

    assert held(generous.id) == 10


def test_the_cap_counts_each_drop_on_its_own(app):
    first, second = drop_of(3), drop_of(3)
    customer = make_customer()
    for batch in first + second:
        inventory.hold(batch.id, 2, customer=customer, now=AT_DROP)

    assert sum(held(batch.id) for batch in first + second) == 12


def test_a_cap_of_zero_turns_the_cap_off(app):
    app.config["SHOP_DROP_HOLD_CAP_PER_ACCOUNT"] = 0
    batches = drop_of(4)
    customer = make_customer()

    for batch in batches:
        inventory.hold(batch.id, 2, customer=customer, now=AT_DROP)

    assert sum(held(batch.id) for batch in batches) == 8


# --- the cap per network -------------------------------------------------------------------


def test_everyone_on_one_network_together_holds_at_most_the_network_cap(app):
    batches = drop_of(4)
    for batch in batches:  # four accounts in one office, two units each: 8, the cap here
        inventory.hold(batch.id, 2, customer=make_customer(), now=AT_DROP, network=OFFICE)
    db.session.commit()

    with pytest.raises(NetworkCapReached) as refused:
        inventory.hold(batches[0].id, 1, customer=make_customer(), now=AT_DROP, network=OFFICE)

    assert refused.value.status == 429 and refused.value.retry_after == 60
    assert "at most 8 at once from one network" in refused.value.message
    db.session.rollback()
    assert held(batches[0].id) == 2
    # Another network, and a client on no network the caps count, are not affected.
    inventory.hold(batches[0].id, 2, customer=make_customer(), now=AT_DROP, network=HOME)
    inventory.hold(batches[0].id, 2, customer=make_customer(), now=AT_DROP, network=None)
    assert held(batches[0].id) == 6


def test_a_network_hold_counts_until_it_is_paid_or_released(app):
    batches = drop_of(4)
    orders = [
        inventory.hold(batch.id, 2, customer=make_customer(), now=AT_DROP, network=OFFICE)
        for batch in batches
    ]
    assert db.session.get(HeldByNetwork, (batches[0].drop_id, OFFICE)).units == 8
    inventory.confirm(orders[0], now=AT_DROP)
    inventory.release(orders[1], EXPIRED, now=AT_DROP)

    for batch in batches[:2]:
        inventory.hold(batch.id, 2, customer=make_customer(), now=AT_DROP, network=OFFICE)

    assert db.session.get(HeldByNetwork, (batches[0].drop_id, OFFICE)).units == 8
    assert all(order.client_net == OFFICE for order in orders)


def test_a_late_payment_is_re_held_even_past_the_caps_and_counted_until_paid(app):
    batches = drop_of(4)
    customer = make_customer()
    late = inventory.hold(batches[0].id, 2, customer=customer, now=AT_DROP, network=OFFICE)
    inventory.release(late, EXPIRED, now=AT_DROP + timedelta(minutes=11))
    for batch in batches[1:]:
        inventory.hold(batch.id, 2, customer=customer, now=AT_DROP, network=OFFICE)

    inventory.rehold(late, now=AT_DROP + timedelta(minutes=12))  # its payment arrived anyway
    drop_id = batches[0].drop_id
    assert db.session.get(HeldByAccount, (drop_id, customer.id)).units == 8
    inventory.confirm(late, now=AT_DROP + timedelta(minutes=12))

    assert db.session.get(HeldByAccount, (drop_id, customer.id)).units == 6
    assert db.session.get(HeldByNetwork, (drop_id, OFFICE)).units == 6


def test_the_network_is_a_keyed_hash_of_the_slash_24_or_the_slash_64(app):
    office = limits.hold_network("81.2.69.142")

    assert office == limits.hold_network("81.2.69.7") != limits.hold_network("81.2.70.142")
    assert len(office) == 32 and "81.2.69" not in office
    assert limits.hold_network("::ffff:81.2.69.1") == office
    home = limits.hold_network("2a02:6b8:1:2:aaaa::1")
    assert home == limits.hold_network("2a02:6b8:1:2:bbbb::9")
    assert home != limits.hold_network("2a02:6b8:1:3::1")
    for inside in ("127.0.0.1", "10.1.2.3", "192.168.0.9", "100.64.0.1", "::1", "fd00::1", ""):
        assert limits.hold_network(inside) is None
    app.config["SECRET_KEY"] = "another-secret-another-secret-another"
    assert limits.hold_network("81.2.69.142") != office


# --- cooling off ---------------------------------------------------------------------------


def test_an_account_whose_holds_lapsed_three_times_in_two_hours_cools_off(app):
    [batch] = drop_of(1)
    customer = make_customer()
    for minutes in (0, 20, 40):
        order = inventory.hold(
            batch.id, 1, customer=customer, now=AT_DROP + timedelta(minutes=minutes)
        )
        lapse(order, at=AT_DROP + timedelta(minutes=minutes + 11))
    now = AT_DROP + timedelta(minutes=60)

    with pytest.raises(CoolingOff) as refused:
        inventory.hold(batch.id, 1, customer=customer, now=now)

    # The first lapse (minute 11) leaves the two-hour window at minute 131: 71 minutes on.
    assert refused.value.status == 429 and refused.value.retry_after == 71 * 60
    assert refused.value.message.startswith("Your last 3 holds ran out without being paid for")
    assert "You can buy again in 71 minutes" in refused.value.message
    db.session.rollback()
    assert held(batch.id) == 0
    with pytest.raises(CoolingOff):
        inventory.hold(batch.id, 1, customer=customer, now=AT_DROP + timedelta(minutes=130))
    inventory.hold(batch.id, 1, customer=customer, now=AT_DROP + timedelta(minutes=131))
    assert held(batch.id) == 1


def test_cancelled_holds_and_other_accounts_lapses_do_not_count(app):
    [batch] = drop_of(1)
    customer, other = make_customer(), make_customer()
    for minutes in (0, 20, 40):
        order = inventory.hold(
            batch.id, 1, customer=customer, now=AT_DROP + timedelta(minutes=minutes)
        )
        assert inventory.release(order, CANCELLED, now=AT_DROP + timedelta(minutes=minutes + 1))
        order = inventory.hold(
            batch.id, 1, customer=other, now=AT_DROP + timedelta(minutes=minutes)
        )
        lapse(order, at=AT_DROP + timedelta(minutes=minutes + 11))

    inventory.hold(batch.id, 1, customer=customer, now=AT_DROP + timedelta(minutes=60))

    assert held(batch.id) == 1


# --- the order of refusals -----------------------------------------------------------------


def test_a_drop_that_is_not_live_is_said_before_the_caps(app):
    batches = drop_of(4)
    customer = make_customer()
    for batch in batches[:3]:
        inventory.hold(batch.id, 2, customer=customer, now=AT_DROP)

    with pytest.raises(DropNotLive):
        inventory.hold(batches[3].id, 1, customer=customer, now=BEFORE_DROP)
    with pytest.raises(InvalidQuantity):
        inventory.hold(batches[3].id, 3, customer=customer, now=AT_DROP)


def test_the_caps_are_said_before_sold_out(app):
    drop = make_drop()
    batches = [make_batch(drop=drop, number=n, limit=2, edition_size=2) for n in (1, 2, 3, 4)]
    customer = make_customer()
    for batch in batches[:3]:
        inventory.hold(batch.id, 2, customer=customer, now=AT_DROP)
    inventory.hold(batches[3].id, 2, customer=make_customer(), now=AT_DROP)  # sold out

    with pytest.raises(DropCapReached):
        inventory.hold(batches[3].id, 1, customer=customer, now=AT_DROP)
    with pytest.raises(SoldOut):
        inventory.hold(batches[3].id, 1, customer=make_customer(), now=AT_DROP)


# --- through the buy button ----------------------------------------------------------------


def _buy(client, batch_id: int, quantity, csrf: str, *, ip: str = "81.2.69.142", **headers):
    return client.post(
        f"/checkout/batches/{batch_id}",
        data={"quantity": quantity, "csrf_token": csrf},
        headers=headers,
        environ_base={"REMOTE_ADDR": ip},
    )


def test_the_buy_button_holds_against_the_clients_network_never_its_address(app, client):
    batch = live_batch(edition_size=10, limit=2)
    customer = make_customer()
    db.session.commit()
    csrf = sign_in(client, customer)

    assert _buy(client, batch.id, 2, csrf).status_code == 303

    db.session.rollback()
    [order] = orders_of(customer)
    assert order.client_net == limits.hold_network("81.2.69.142")
    assert db.session.get(HeldByNetwork, (batch.drop_id, order.client_net)).units == 2


def test_a_buy_over_the_cap_shows_the_drop_page_with_the_reason_and_holds_nothing(app, client):
    first = live_batch(edition_size=10, limit=2)
    batches = [first] + [live_batch(drop=first.drop, number=n, limit=2) for n in (2, 3, 4)]
    customer = make_customer()
    db.session.commit()
    csrf = sign_in(client, customer)
    for batch in batches[:3]:
        assert _buy(client, batch.id, 2, csrf).status_code == 303

    page = _buy(client, batches[3].id, 1, csrf)
    answer = _buy(client, batches[3].id, 1, csrf, Accept="application/json")

    assert page.status_code == 409
    html = page.get_data(as_text=True)
    assert "one account holds at most 6 units of a drop at once" in html
    assert f'id="batch-{batches[3].id}-title"' in html  # the drop page, not an error page
    assert answer.status_code == 409
    error = answer.get_json()["error"]
    assert error["code"] == "drop_cap_reached" and error["cap"] == 6 and error["allowed"] == 0
    db.session.rollback()
    assert held(batches[3].id) == 0


def test_a_cooling_off_answers_429_with_retry_after_on_the_page_and_in_json(app, client):
    batch = live_batch(edition_size=10, limit=2)  # live by the real clock, as the view reads it
    customer = make_customer()
    now = clock.now()
    for minutes in (30, 25, 20):
        order = inventory.hold(batch.id, 1, customer=customer, now=now - timedelta(minutes=minutes))
        lapse(order, at=now - timedelta(minutes=minutes - 11))
    csrf = sign_in(client, customer)

    page = _buy(client, batch.id, 1, csrf)
    answer = _buy(client, batch.id, 1, csrf, Accept="application/json")

    assert page.status_code == 429
    assert 100 * 60 <= int(page.headers["Retry-After"]) <= 101 * 60  # 120 - 19 minutes
    html = page.get_data(as_text=True)
    assert "Your last 3 holds ran out without being paid for" in html
    assert f'id="batch-{batch.id}-title"' in html
    assert answer.status_code == 429
    error = answer.get_json()["error"]
    assert error["code"] == "cooling_off" and error["lapses"] == 3
    assert error["retry_after"] == int(answer.headers["Retry-After"])
    db.session.rollback()
    assert held(batch.id) == 0


def test_bad_input_is_refused_as_before(app, client):
    batch = live_batch(edition_size=10, limit=2)
    customer = make_customer()
    db.session.commit()
    csrf = sign_in(client, customer)

    assert _buy(client, batch.id, "two", csrf).status_code == 422
    assert _buy(client, batch.id, 3, csrf).status_code == 422
    assert _buy(client, 999_999, 1, csrf).status_code == 404
    db.session.rollback()
    assert held(batch.id) == 0 and db.session.scalar(select(HeldByAccount)) is None


# --- a race past a cap ---------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_hold_racing_past_the_cap_takes_nothing(app, client):
    """The hold's snapshot still shows room when another hold of the same account, on another
    batch, commits first: the account's row decides (its CHECK fails the statement), so the
    cap is never passed and nothing of the refused hold stays."""
    first = live_batch(edition_size=10, limit=2)
    batches = [first] + [live_batch(drop=first.drop, number=n, limit=2) for n in (2, 3)]
    customer = make_customer()
    db.session.commit()
    csrf = sign_in(client, customer)
    assert _buy(client, batches[0].id, 2, csrf).status_code == 303
    key = {"drop": first.drop_id, "customer": customer.id}

    with db.engine.connect() as racer, ThreadPoolExecutor(1) as pool:
        # The racing hold: it took 4 more units of another batch and has not committed yet.
        racer.execute(
            text(
                "UPDATE held_by_account SET units = units + 4 "
                "WHERE drop_id = :drop AND customer_id = :customer"
            ),
            key,
        )
        buying = pool.submit(_buy, client, batches[2].id, 2, csrf, Accept="application/json")
        time.sleep(0.5)  # the buy's statement has its snapshot and waits for the row
        assert not buying.done()
        racer.commit()
        answer = buying.result(timeout=10)

    assert answer.status_code == 409
    assert answer.get_json()["error"]["code"] == "drop_cap_reached"
    db.session.rollback()
    assert held(batches[2].id) == 0
    assert db.session.get(HeldByAccount, (first.drop_id, customer.id)).units == 6
    assert db.session.scalar(select(Order).where(Order.batch_id == batches[2].id)) is None
    assert (
        db.session.scalar(
            text("SELECT units FROM allotments WHERE batch_id = :id"), {"id": batches[2].id}
        )
        is None
    )
    assert [o.state for o in orders_of(customer)] == [HELD]

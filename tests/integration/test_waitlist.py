"""The waitlist of a sold-out batch: joining, units set aside, offers in line order, leaving,
lines that close, and the pages a customer sees."""

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from shop import audit, clock, drops, inventory, ledger, sweeper, waitlist
from shop.errors import AlreadyInLine, DropNotLive, LimitReached, NotSoldOut, SoldOut
from shop.extensions import db
from shop.models import Batch, Message, Order, WaitlistPlace
from shop.models.drop import CLOSED
from shop.models.drop import DRAW as DRAW_MODE
from shop.models.order import CROWD, EXPIRED, HELD, PAID, WAITLIST
from shop.models.waitlist import BOUGHT, ENDED, LAPSED, LEFT, OFFERED, WAITING
from testkit.factories import make_customer
from tests.support.stripe import live_batch, sign_in, stripe_settings


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


def _now():
    return clock.now()


def _batch(edition_size: int = 2, limit: int = 2) -> Batch:
    return live_batch(edition_size=edition_size, limit=limit, price=3000)


def _sold_out(batch: Batch, quantities=(1, 1)) -> list[Order]:
    """Crowd holds taking every unit of the batch."""
    return [
        inventory.hold(batch.id, quantity, customer=make_customer(), now=_now())
        for quantity in quantities
    ]


def _fresh(batch: Batch) -> Batch:
    db.session.expire_all()
    return db.session.get(Batch, batch.id)


def _violations(batch: Batch) -> list[str]:
    db.session.flush()
    return ledger.violations(db.session.connection(), batch.id)


def _in_line(batch: Batch, count: int, quantity: int = 1) -> list[WaitlistPlace]:
    return [
        waitlist.join(batch, quantity, customer=make_customer(), now=_now()) for _ in range(count)
    ]


def test_a_customer_joins_a_sold_out_batch_at_the_back_of_the_line(app):
    batch = _batch()
    _sold_out(batch)
    first, second = _in_line(batch, 2)

    assert first.state == WAITING and waitlist.standing(first).position == 1
    assert waitlist.standing(second).position == 2
    assert _fresh(batch).waiting == 2 and _violations(batch) == []


def test_joining_twice_is_refused_and_keeps_one_place(app):
    batch = _batch()
    _sold_out(batch)
    customer = make_customer()
    waitlist.join(batch, 1, customer=customer, now=_now())
    db.session.commit()

    with pytest.raises(AlreadyInLine):
        waitlist.join(batch, 2, customer=customer, now=_now())

    db.session.rollback()
    assert _fresh(batch).waiting == 1


def test_a_batch_the_crowd_can_still_buy_has_no_waitlist(app):
    batch = _batch(edition_size=3)
    _sold_out(batch)
    with pytest.raises(NotSoldOut, match="buy it now"):
        waitlist.join(batch, 1, customer=make_customer(), now=_now())


def test_a_batch_paid_for_to_the_last_unit_has_no_waitlist(app):
    batch = _batch()
    for order in _sold_out(batch):
        inventory.confirm(order, now=_now())
    with pytest.raises(NotSoldOut, match="none can come free"):
        waitlist.join(batch, 1, customer=make_customer(), now=_now())


def test_a_customer_who_owns_the_limit_cannot_wait_for_more(app):
    batch = _batch(edition_size=2, limit=2)
    owner = make_customer()
    inventory.hold(batch.id, 2, customer=owner, now=_now())
    with pytest.raises(LimitReached):
        waitlist.join(batch, 1, customer=owner, now=_now())


def test_units_freed_while_someone_waits_are_set_aside_not_sold_to_the_crowd(app):
    batch = _batch()
    held = _sold_out(batch)
    _in_line(batch, 1)

    assert inventory.release(held[0], EXPIRED, now=_now())

    batch = _fresh(batch)
    assert (batch.held, batch.reserved, batch.remaining) == (1, 1, 0)
    with pytest.raises(SoldOut):
        inventory.hold(batch.id, 1, customer=make_customer(), now=_now())
    assert _violations(batch) == []


def test_units_freed_while_nobody_waits_go_back_to_the_crowd(app):
    batch = _batch()
    held = _sold_out(batch)
    inventory.release(held[0], EXPIRED, now=_now())
    assert _fresh(batch).reserved == 0 and _fresh(batch).remaining == 1


def test_set_aside_units_are_offered_in_line_order_with_a_message(app):
    batch = _batch(edition_size=3)
    held = _sold_out(batch, (2, 1))
    first, second = _in_line(batch, 2)
    inventory.release(held[1], EXPIRED, now=_now())
    db.session.commit()

    report = waitlist.offer_freed(_now())

    assert report.offered == 1
    db.session.expire_all()
    assert (first.state, second.state) == (OFFERED, WAITING)
    offer = db.session.get(Order, first.order_id)
    assert offer.kind == WAITLIST and offer.state == HELD and offer.quantity == 1
    assert offer.customer_id == first.customer_id
    minutes = app.config["SHOP_WAITLIST_OFFER_MINUTES"]
    assert offer.hold_expires_at > _now() + timedelta(minutes=minutes - 1)
    batch = _fresh(batch)
    assert (batch.held, batch.reserved, batch.waiting) == (3, 0, 1)
    assert waitlist.standing(second).position == 1
    [message] = db.session.scalars(select(Message).where(Message.kind == "waitlist_offer")).all()
    assert message.user_id == first.customer_id and first.public_id in message.text_body
    assert _violations(batch) == []


def test_an_offer_holds_what_the_place_asked_for_as_far_as_units_go(app):
    batch = _batch(edition_size=3, limit=3)
    held = _sold_out(batch, (1, 2))
    [place] = _in_line(batch, 1, quantity=3)
    inventory.release(held[1], EXPIRED, now=_now())
    db.session.commit()

    waitlist.offer_freed(_now())

    db.session.expire_all()
    assert db.session.get(Order, place.order_id).quantity == 2


def test_when_the_last_waiting_customer_gets_an_offer_the_rest_goes_back_to_the_crowd(app):
    batch = _batch(edition_size=3, limit=3)
    held = _sold_out(batch, (3,))
    _in_line(batch, 1, quantity=1)
    inventory.release(held[0], EXPIRED, now=_now())
    db.session.commit()
    assert _fresh(batch).reserved == 3

    waitlist.offer_freed(_now())

    batch = _fresh(batch)
    assert (batch.held, batch.reserved, batch.waiting, batch.remaining) == (1, 0, 0, 2)
    assert _violations(batch) == []


def test_an_offer_that_runs_out_moves_on_to_the_next_in_line(app):
    batch = _batch()
    held = _sold_out(batch)
    first, second = _in_line(batch, 2)
    inventory.release(held[0], EXPIRED, now=_now())
    db.session.commit()
    waitlist.offer_freed(_now())
    db.session.expire_all()
    deadline = db.session.get(Order, first.order_id).hold_expires_at

    assert sweeper.sweep(deadline)["released"] >= 1
    report = waitlist.offer_freed(deadline)

    db.session.expire_all()
    assert (first.state, second.state) == (LAPSED, OFFERED)
    assert report.settled == 1 and report.offered == 1
    assert db.session.get(Order, first.order_id).state == EXPIRED
    assert db.session.get(Order, second.order_id).state == HELD
    assert _violations(_fresh(batch)) == []


def test_the_last_customer_leaving_the_line_returns_the_set_aside_units(app):
    batch = _batch()
    held = _sold_out(batch)
    [place] = _in_line(batch, 1)
    inventory.release(held[0], EXPIRED, now=_now())

    assert waitlist.leave(place, now=_now())
    assert not waitlist.leave(place, now=_now())

    batch = _fresh(batch)
    assert place.state == LEFT and (batch.waiting, batch.reserved, batch.remaining) == (0, 0, 1)
    assert _violations(batch) == []


def test_the_line_closes_when_the_batch_is_paid_for_to_the_last_unit(app):
    batch = _batch()
    held = _sold_out(batch)
    [place] = _in_line(batch, 1)
    for order in held:
        inventory.confirm(order, now=_now())
    db.session.commit()

    assert waitlist.offer_freed(_now()).closed == 1

    db.session.expire_all()
    assert place.state == ENDED and _fresh(batch).waiting == 0
    [message] = db.session.scalars(select(Message).where(Message.kind == "waitlist_closed"))
    assert "every unit is now paid for" in message.text_body


def test_the_line_closes_when_the_drop_closes(app):
    batch = _batch()
    held = _sold_out(batch)
    [place] = _in_line(batch, 1)
    inventory.release(held[0], EXPIRED, now=_now())
    drops.close_drop(batch.drop, actor=audit.CLI, now=_now())
    db.session.commit()

    report = waitlist.offer_freed(_now() + timedelta(seconds=1))

    db.session.expire_all()
    assert report.closed == 1 and report.offered == 0 and place.state == ENDED
    batch = _fresh(batch)
    assert (batch.waiting, batch.reserved) == (0, 0) and _violations(batch) == []


# --- through the pages -----------------------------------------------------------------------


def test_a_customer_joins_from_the_drop_page_and_sees_their_place(app, client):
    batch = _batch()
    _sold_out(batch)
    _in_line(batch, 1)
    customer = make_customer()
    db.session.commit()
    csrf = sign_in(client, customer)

    joined = client.post(
        f"/waitlist/batches/{batch.id}/join", data={"quantity": "1", "csrf_token": csrf}
    )

    assert joined.status_code == 303 and joined.headers["Location"].endswith(f"#buy-{batch.id}")
    page = client.get(joined.headers["Location"]).get_data(as_text=True)
    assert "No. 2 in line" in page and "No. 2</span> You're in line" in page
    assert "Leave the waitlist" in page


@pytest.mark.parametrize(
    ("arrange", "status", "saying"),
    [
        ("twice", 409, "already on the waitlist"),
        ("not sold out", 409, "no need to wait in line"),
        ("over the limit", 422, "between 1 and 2"),
    ],
)
def test_a_refused_join_shows_why_on_the_drop_page(app, client, arrange, status, saying):
    batch = _batch(edition_size=2 if arrange != "not sold out" else 3)
    _sold_out(batch)
    customer = make_customer()
    if arrange == "twice":
        waitlist.join(batch, 1, customer=customer, now=_now())
    db.session.commit()
    csrf = sign_in(client, customer)
    quantity = "3" if arrange == "over the limit" else "1"

    refused = client.post(
        f"/waitlist/batches/{batch.id}/join", data={"quantity": quantity, "csrf_token": csrf}
    )

    assert refused.status_code == status
    assert saying in refused.get_data(as_text=True)
    db.session.rollback()
    assert _fresh(batch).waiting == (1 if arrange == "twice" else 0)


def test_joining_needs_a_login(app, client):
    batch = _batch()
    _sold_out(batch)
    db.session.commit()
    response = client.post(f"/waitlist/batches/{batch.id}/join", data={"quantity": "1"})
    assert response.status_code in (303, 400)  # to the login page, or refused without CSRF
    assert _fresh(batch).waiting == 0


def test_an_offer_link_is_its_customers_alone(app, client):
    batch = _batch()
    held = _sold_out(batch)
    [place] = _in_line(batch, 1)
    inventory.release(held[0], EXPIRED, now=_now())
    db.session.commit()
    waitlist.offer_freed(_now())
    someone_else = make_customer()
    db.session.commit()

    sign_in(client, someone_else)
    assert client.get(f"/waitlist/offers/{place.public_id}").status_code == 404
    assert client.get("/waitlist/offers/not-a-real-offer-id").status_code == 404

    sign_in(client, place.customer)
    page = client.get(f"/waitlist/offers/{place.public_id}")
    assert page.status_code == 200 and "Held for you" in page.get_data(as_text=True)


def test_a_customer_pays_an_offer_and_the_place_is_bought(app, client, emulator):
    batch = _batch()
    held = _sold_out(batch)
    [place] = _in_line(batch, 1)
    inventory.release(held[0], EXPIRED, now=_now())
    db.session.commit()
    waitlist.offer_freed(_now())
    db.session.expire_all()
    csrf = sign_in(client, place.customer)
    offer = db.session.get(Order, place.order_id)

    to_stripe = client.post(f"/checkout/orders/{offer.public_id}/pay", data={"csrf_token": csrf})
    assert to_stripe.status_code == 303
    db.session.rollback()
    session_id = db.session.get(Order, offer.id).checkout_session_id
    emulator.complete(session_id)
    assert client.get(f"/checkout/success?session_id={session_id}").status_code == 200
    waitlist.offer_freed(_now())

    db.session.expire_all()
    assert db.session.get(Order, offer.id).state == PAID and place.state == BOUGHT
    assert _violations(_fresh(batch)) == []


def test_turning_an_offer_down_passes_its_units_to_the_next_in_line(app, client, emulator):
    batch = _batch()
    held = _sold_out(batch)
    first, second = _in_line(batch, 2)
    inventory.release(held[0], EXPIRED, now=_now())
    db.session.commit()
    waitlist.offer_freed(_now())
    db.session.expire_all()
    csrf = sign_in(client, first.customer)

    left = client.post(f"/waitlist/batches/{batch.id}/leave", data={"csrf_token": csrf})
    assert left.status_code == 303
    waitlist.offer_freed(_now())

    db.session.expire_all()
    assert (first.state, second.state) == (LEFT, OFFERED)
    batch = _fresh(batch)
    assert (batch.held, batch.reserved, batch.waiting) == (2, 0, 0)
    assert _violations(batch) == []


def test_crowd_holds_stay_crowd_holds(app):
    batch = _batch()
    assert {order.kind for order in _sold_out(batch)} == {CROWD}


# --- the ledger knows the line -------------------------------------------------------------


def test_the_ledger_check_reconciles_a_batch_with_a_line_and_set_aside_units(app, runner):
    batch = _batch()
    held = _sold_out(batch)
    _in_line(batch, 2)
    inventory.release(held[0], EXPIRED, now=_now())
    db.session.commit()

    outcome = runner.invoke(args=["shop", "ledger", "--check"])

    assert outcome.exit_code == 0, outcome.output
    assert "held 1, 2 waiting in line (1 set aside)" in outcome.output


@pytest.mark.parametrize(
    ("corrupt", "said"),
    [
        ("UPDATE batches SET waiting = waiting + 1", "waiting 2 != places waiting in line 1"),
        ("UPDATE orders SET kind = 'draw' WHERE kind = 'waitlist'", "has a draw order"),
        (
            "UPDATE waitlist_places SET order_id = (SELECT MIN(id) FROM orders) "
            "WHERE state = 'offered'",
            "has a crowd order",
        ),
    ],
    ids=["waiting counter", "offer of another kind", "offer of someone else"],
)
def test_a_broken_line_fails_the_ledger_check(app, runner, corrupt, said):
    batch = _batch()
    held = _sold_out(batch)
    _in_line(batch, 2)
    inventory.release(held[0], EXPIRED, now=_now())
    db.session.commit()
    waitlist.offer_freed(_now())
    db.session.execute(text(corrupt))
    db.session.commit()

    outcome = runner.invoke(args=["shop", "ledger", "--check"])

    assert outcome.exit_code == 1
    [line] = [line for line in outcome.output.splitlines() if line.startswith("MISMATCH")]
    assert said in line


def test_leaving_a_line_you_are_not_in_is_a_404(app, client):
    batch = _batch()
    _sold_out(batch)
    _in_line(batch, 1)
    db.session.commit()
    csrf = sign_in(client, make_customer())

    left = client.post(f"/waitlist/batches/{batch.id}/leave", data={"csrf_token": csrf})

    assert left.status_code == 404
    assert _fresh(batch).waiting == 1


@pytest.mark.parametrize("drop_is", ["a draw", "closed"])
def test_a_draw_or_a_closed_drop_has_no_waitlist(app, drop_is):
    batch = _batch()
    _sold_out(batch)
    if drop_is == "a draw":
        batch.drop.mode = DRAW_MODE
    else:
        batch.drop.state = CLOSED
    db.session.flush()

    with pytest.raises(DropNotLive):
        waitlist.join(batch, 1, customer=make_customer(), now=_now())

"""Draw mode (issue 17, item 1) on SQLite and PostgreSQL: a seed committed when the drop is
announced, entries in the window (one per account, within the limit), a draw that runs once
after the window, winners held in draw order and told, the others told they were not drawn,
unpaid wins passed down the order, and the published draw that anyone recomputes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from shop import audit, clock, draws, drops, inventory, sweeper, verify_draw, waitlist
from shop.errors import DropNotLive, EditNotAllowed, InvalidQuantity, InvalidState
from shop.extensions import db
from shop.models import Batch, DrawEntry, Drop, Message, Order
from shop.models.draw import LAPSED, WAITING, WON
from shop.models.drop import DRAFT, DRAW, SCHEDULED
from shop.models.order import EXPIRED, HELD
from testkit.factories import (
    AFTER_DROP,
    AT_DROP,
    BEFORE_DROP,
    CLOSES_AT,
    OPENS_AT,
    make_batch,
    make_customer,
    make_draw_drop,
    make_drop,
    make_maker,
)
from tests.support.console import browser


def _draw(edition_size: int = 5, limit: int = 2) -> Batch:
    return make_batch(drop=make_draw_drop(), edition_size=edition_size, limit=limit)


def _enter(batch: Batch, quantity: int = 1, customer=None) -> DrawEntry:
    entry = draws.enter(
        batch.drop, batch.id, quantity, customer=customer or make_customer(), now=AT_DROP
    )
    db.session.commit()
    return entry


def _run(batch: Batch, *, now=AFTER_DROP) -> draws.Drawn:
    drawn = draws.run_draw(batch.drop, now=now)
    db.session.commit()
    return drawn


# Committing to the seed.


def test_announcing_a_draw_fixes_its_seed_and_publishes_only_the_commitment(app, client):
    maker = make_maker()
    drop = make_drop(maker, state=DRAFT, opens_at=None, closes_at=CLOSES_AT)
    drop.mode = DRAW
    make_batch(drop=drop)
    drops.open_drop(drop, actor=audit.CLI, now=BEFORE_DROP, at=OPENS_AT)
    db.session.commit()

    assert drop.state == SCHEDULED
    assert len(drop.draw_seed) == 64
    assert drop.draw_commitment == draws.commitment_of(drop.draw_seed)
    page = client.get(f"/drops/{drop.slug}").get_data(as_text=True)
    assert drop.draw_commitment in page
    assert drop.draw_seed not in page
    published = client.get(f"/drops/{drop.slug}/draw.json").get_json()
    assert published["commitment"] == drop.draw_commitment
    assert published["seed"] is None


def test_the_seed_cannot_change_after_the_commitment_through_the_app(app):
    maker = make_maker()
    drop = make_drop(maker, state=DRAFT, opens_at=None, closes_at=CLOSES_AT)
    drop.mode = DRAW
    make_batch(drop=drop)
    drops.open_drop(drop, actor=audit.CLI, now=BEFORE_DROP, at=OPENS_AT)
    db.session.commit()
    seed, commitment = drop.draw_seed, drop.draw_commitment

    # Back to draft and announced again: the same seed, the same commitment.
    drops.unschedule_drop(drop, actor=audit.CLI, now=BEFORE_DROP)
    drops.open_drop(drop, actor=audit.CLI, now=BEFORE_DROP, at=OPENS_AT)
    db.session.commit()
    assert (drop.draw_seed, drop.draw_commitment) == (seed, commitment)
    # Nor can an announced draw become a sale and back.
    details = drops.DropDetails(title=drop.title, batch_ids=[b.id for b in drop.batches])
    with pytest.raises(EditNotAllowed):
        drops.update_drop(drop, details, actor=audit.CLI, now=BEFORE_DROP)
    db.session.rollback()
    assert (drop.draw_seed, drop.draw_commitment) == (seed, commitment)


def test_a_draw_cannot_be_announced_without_a_time_when_entries_close(app):
    drop = make_drop(state=DRAFT, opens_at=None, closes_at=None)
    drop.mode = DRAW
    make_batch(drop=drop)
    with pytest.raises(InvalidState, match="entries close"):
        drops.open_drop(drop, actor=audit.CLI, now=BEFORE_DROP, at=OPENS_AT)


# Entering.


def test_an_entry_in_the_window_is_taken_with_a_public_id(app):
    batch = _draw()
    entry = _enter(batch, 2)

    assert entry.quantity == 2
    assert len(entry.public_id) >= 16
    assert entry.position is None


@pytest.mark.parametrize(
    ("moment", "reason"),
    [(BEFORE_DROP, "not open yet"), (AFTER_DROP, "have closed")],
)
def test_an_entry_outside_the_window_is_refused_with_a_clear_message(app, moment, reason):
    batch = _draw()
    with pytest.raises(draws.EntryRefused, match=reason):
        draws.enter(batch.drop, batch.id, 1, customer=make_customer(), now=moment)


def test_a_second_entry_of_the_same_account_is_refused_and_names_the_first(app):
    batch = _draw()
    customer = make_customer()
    first = _enter(batch, 1, customer)

    with pytest.raises(draws.EntryRefused, match=f"already entered.*{first.public_id}"):
        draws.enter(batch.drop, batch.id, 2, customer=customer, now=AT_DROP)
    db.session.rollback()
    assert db.session.scalar(select(db.func.count()).select_from(DrawEntry)) == 1


def test_an_entry_over_the_batch_limit_is_refused(app):
    batch = _draw(limit=2)
    with pytest.raises(InvalidQuantity, match="1 to 2"):
        draws.enter(batch.drop, batch.id, 3, customer=make_customer(), now=AT_DROP)


def test_an_entry_on_a_drop_that_is_not_a_draw_is_refused(app):
    batch = make_batch()
    with pytest.raises(draws.EntryRefused, match="first come, first served"):
        draws.enter(batch.drop, batch.id, 1, customer=make_customer(), now=AT_DROP)


def test_a_draw_drop_sells_nothing_to_the_crowd(app):
    batch = _draw()
    with pytest.raises(DropNotLive):
        inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP)


# Drawing.


def test_a_draw_cannot_run_before_its_entries_close(app):
    batch = _draw()
    _enter(batch)
    with pytest.raises(InvalidState, match="still open"):
        draws.run_draw(batch.drop, now=AT_DROP)


def test_a_draw_runs_once(app):
    batch = _draw()
    _enter(batch)
    _run(batch)
    with pytest.raises(InvalidState, match="drawn already"):
        draws.run_draw(batch.drop, now=AFTER_DROP + timedelta(minutes=1))
    db.session.rollback()
    assert db.session.scalar(select(db.func.count()).select_from(Order)) == 1


def test_with_more_entries_than_units_the_edition_goes_down_the_draw_order(app):
    batch = _draw(edition_size=5, limit=2)
    entries = [_enter(batch, 2) for _ in range(6)]
    drawn = _run(batch)

    seed = batch.drop.draw_seed
    ordered = draws.draw_order(seed, [e.public_id for e in entries])
    quantity = {e.public_id: e.quantity for e in entries}
    assert drawn.by_batch[batch.id] == [(ordered[0], 2), (ordered[1], 2), (ordered[2], 1)]
    db.session.expire_all()
    assert (batch.held, batch.sold) == (5, 0)
    states = {
        e.public_id: (e.position, e.state, e.units) for e in db.session.scalars(select(DrawEntry))
    }
    assert [states[i][0] for i in ordered] == [1, 2, 3, 4, 5, 6]
    assert [states[i][1] for i in ordered] == [WON, WON, WON, WAITING, WAITING, WAITING]
    held = db.session.scalars(select(Order).where(Order.state == HELD)).all()
    assert sorted(o.quantity for o in held) == [1, 2, 2]
    assert all(o.hold_expires_at == AFTER_DROP + timedelta(hours=24) for o in held)
    assert quantity[ordered[2]] == 2  # the last one drawn got what was left


def test_with_fewer_entries_than_units_everyone_gets_what_they_asked(app):
    batch = _draw(edition_size=10, limit=3)
    for quantity in (1, 3, 2):
        _enter(batch, quantity)
    drawn = _run(batch)

    assert (drawn.winners, drawn.units, drawn.not_drawn) == (3, 6, 0)
    db.session.expire_all()
    assert (batch.held, batch.draw_units) == (6, 10)


def test_winners_are_written_with_a_deadline_and_the_others_that_they_were_not_drawn(app):
    batch = _draw(edition_size=1, limit=1)
    winner_to_be = [_enter(batch) for _ in range(3)]
    _run(batch)

    kinds = sorted(m.kind for m in db.session.scalars(select(Message)))
    assert kinds == ["draw_not_drawn", "draw_not_drawn", "draw_won"]
    won = db.session.scalar(select(Message).where(Message.kind == "draw_won"))
    assert "Pay by" in won.text_body
    assert any(e.public_id in won.text_body for e in winner_to_be)


def test_a_winner_who_does_not_pay_in_time_loses_the_units_to_the_next_entry(app, emulator):
    batch = _draw(edition_size=2, limit=2)
    entries = [_enter(batch, 2) for _ in range(3)]
    _run(batch)
    ordered = draws.draw_order(batch.drop.draw_seed, [e.public_id for e in entries])
    first = db.session.scalar(select(DrawEntry).where(DrawEntry.public_id == ordered[0]))
    deadline = first.order.hold_expires_at

    sweeper.sweep(deadline + timedelta(seconds=1))  # no session at Stripe: released at once
    assert draws.pass_on_lapsed(deadline + timedelta(minutes=1)) == 1
    db.session.commit()

    by_id = {e.public_id: e for e in db.session.scalars(select(DrawEntry))}
    assert by_id[ordered[0]].state == LAPSED
    assert by_id[ordered[0]].order.state == EXPIRED
    assert (by_id[ordered[1]].state, by_id[ordered[1]].units, by_id[ordered[1]].passed_on) == (
        WON,
        2,
        True,
    )
    assert by_id[ordered[2]].state == WAITING
    db.session.expire_all()
    assert batch.held == 2
    # Once only: a second pass finds nothing to pass on.
    assert draws.pass_on_lapsed(deadline + timedelta(minutes=2)) == 0


# Publishing and checking.


def _published(client, batch: Batch) -> dict:
    return client.get(f"/drops/{batch.drop.slug}/draw.json").get_json()


def test_the_published_draw_has_public_ids_and_quantities_and_no_names(app, client):
    batch = _draw(edition_size=3)
    customers = [make_customer() for _ in range(4)]
    for customer in customers:
        _enter(batch, 1, customer)
    _run(batch)

    body = client.get(f"/drops/{batch.drop.slug}/draw.json").get_data(as_text=True)
    data = json.loads(body)
    assert data["seed"] == batch.drop.draw_seed
    assert len(data["batches"][0]["entries"]) == 4
    assert set(data["batches"][0]["entries"][0]) == {"id", "quantity"}
    for customer in customers:
        assert customer.email not in body
        assert customer.display_name not in body


def test_the_verifier_agrees_with_the_shop(app, client):
    batch = _draw(edition_size=3, limit=2)
    for quantity in (2, 1, 2, 1, 2):
        _enter(batch, quantity)
    _run(batch)

    assert verify_draw.check(_published(client, batch)) == []


def test_the_verifier_catches_a_changed_seed(app, client):
    batch = _draw(edition_size=2)
    for _ in range(4):
        _enter(batch)
    _run(batch)
    data = _published(client, batch)
    data["seed"] = draws.new_seed()

    problems = verify_draw.check(data)
    assert any("does not match the commitment" in p for p in problems)


def test_the_verifier_catches_a_removed_entry(app, client):
    batch = _draw(edition_size=2, limit=1)
    for _ in range(5):
        _enter(batch)
    _run(batch)
    data = _published(client, batch)
    winner = data["batches"][0]["winners"][0]["id"]
    data["batches"][0]["entries"] = [e for e in data["batches"][0]["entries"] if e["id"] != winner]

    problems = verify_draw.check(data)
    assert any(f"winner {winner} is not among the published entries" in p for p in problems)
    assert verify_draw.check(_published(client, batch), entry="not-an-entry") == [
        "your entry not-an-entry is not in the published list"
    ]


def test_the_verifier_catches_a_changed_winner(app, client):
    batch = _draw(edition_size=1, limit=1)
    for _ in range(4):
        _enter(batch)
    _run(batch)
    data = _published(client, batch)
    listed = [e["id"] for e in data["batches"][0]["entries"]]
    drawn = data["batches"][0]["winners"][0]["id"]
    other = next(i for i in listed if i != drawn)
    data["batches"][0]["winners"] = [{"id": other, "units": 1}]

    problems = verify_draw.check(data)
    assert "the rule does not draw it" in " ".join(problems)
    assert any(f"the rule draws {drawn}" in p for p in problems)


def test_the_verifier_reads_a_saved_file_and_says_ok(app, client, tmp_path, capsys):
    batch = _draw(edition_size=2)
    mine = _enter(batch)
    _enter(batch)
    _run(batch)
    saved = tmp_path / "draw.json"
    saved.write_text(json.dumps(_published(client, batch)))

    code = verify_draw.main([str(saved), f"--entry={mine.public_id}"])  # an id may begin with "-"

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("OK:")
    assert f"entry {mine.public_id} is listed" in out


def test_the_draw_page_shows_the_rule_the_seed_and_finds_an_entry(app, client):
    batch = _draw(edition_size=1, limit=1)
    entry = _enter(batch)
    _run(batch)

    page = client.get(f"/drops/{batch.drop.slug}/draw?entry={entry.public_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "HMAC-SHA256" in html
    assert batch.drop.draw_seed in html
    assert f"Entry <code>{entry.public_id}</code> is listed" in html
    missing = client.get(f"/drops/{batch.drop.slug}/draw?entry=nobody").get_data(as_text=True)
    assert "No entry <code>nobody</code> is listed" in missing


def test_a_sale_drop_has_no_draw_page(app, client):
    batch = make_batch()
    db.session.commit()
    assert client.get(f"/drops/{batch.drop.slug}/draw").status_code == 404
    assert client.get(f"/drops/{batch.drop.slug}/draw.json").status_code == 404


def test_the_draw_command_draws_once_and_says_why_not_twice(app, runner):
    batch = _draw(edition_size=1, limit=1)
    _enter(batch)
    db.session.execute(
        update(Drop)
        .where(Drop.id == batch.drop_id)
        .values(opens_at=OPENS_AT - timedelta(days=30), closes_at=OPENS_AT - timedelta(days=29))
    )
    db.session.commit()

    first = runner.invoke(args=["shop", "draw", batch.drop.slug])
    again = runner.invoke(args=["shop", "draw", batch.drop.slug])

    assert first.exit_code == 0, first.output
    assert "1 winners for 1 units" in first.output
    assert again.exit_code == 1
    assert "drawn already" in again.output


def test_the_demo_has_a_drawn_draw_that_verifies_and_an_upcoming_one(app, client, runner):
    assert runner.invoke(args=["shop", "demo"]).exit_code == 0

    drawn = client.get("/drops/cellar-draw/draw.json").get_json()
    upcoming = client.get("/drops/second-cellar-draw/draw.json").get_json()

    assert verify_draw.check(drawn) == []
    assert len(drawn["batches"][0]["entries"]) == 12
    assert sum(w["units"] for w in drawn["batches"][0]["winners"]) == 12
    assert upcoming["seed"] is None and len(upcoming["commitment"]) == 64
    page = client.get("/drops/second-cellar-draw").get_data(as_text=True)
    assert upcoming["commitment"] in page


def _live_draw_batch() -> Batch:
    """A draw taking entries by the real clock (views read ``clock.now()``)."""
    now = clock.now()
    drop = make_draw_drop(opens_at=now - timedelta(hours=1), closes_at=now + timedelta(hours=1))
    batch = make_batch(drop=drop, edition_size=3, limit=2)
    db.session.commit()
    return batch


def test_entering_through_the_drop_page_gives_the_entry_id_and_a_second_try_says_why_not(app):
    batch = _live_draw_batch()
    customer = make_customer()
    db.session.commit()
    visitor = browser(app, customer)
    path = f"/drops/{batch.drop.slug}/batches/{batch.id}/enter"

    first = visitor.form(path, {"quantity": "2"})
    again = visitor.form(path, {"quantity": "1"})

    assert first.status_code == 303
    entry = db.session.scalar(select(DrawEntry).where(DrawEntry.customer_id == customer.id))
    assert entry.quantity == 2
    page = visitor.get(f"/drops/{batch.drop.slug}").get_data(as_text=True)
    assert entry.public_id in page
    assert again.status_code == 409
    assert "already entered" in again.get_data(as_text=True)


def test_entering_needs_a_verified_email_where_verification_is_on(app):
    app.config["SHOP_REQUIRE_VERIFIED_EMAIL"] = True
    batch = _live_draw_batch()
    customer = make_customer()
    db.session.commit()
    visitor = browser(app, customer)

    answer = visitor.form(f"/drops/{batch.drop.slug}/batches/{batch.id}/enter", {"quantity": "1"})

    assert answer.status_code == 403
    assert "confirm your email address before entering the draw" in answer.get_data(as_text=True)
    assert db.session.scalar(select(db.func.count()).select_from(DrawEntry)) == 0


def test_the_maker_sees_the_entries_and_the_commitment_on_the_console(app):
    batch = _live_draw_batch()
    draws.enter(batch.drop, batch.id, 1, customer=make_customer(), now=clock.now())
    db.session.commit()
    console = browser(app, batch.drop.maker)

    page = console.get(f"/maker/drops/{batch.drop_id}").get_data(as_text=True)

    assert batch.drop.draw_commitment in page
    assert f"No. {batch.number}: 1" in page


def test_the_verifier_says_what_differs_and_exits_one(app, client, tmp_path, capsys):
    batch = _draw(edition_size=1, limit=1)
    for _ in range(3):
        _enter(batch)
    _run(batch)
    data = _published(client, batch)
    data["seed"] = draws.new_seed()
    saved = tmp_path / "draw.json"
    saved.write_text(json.dumps(data))

    code = verify_draw.main([str(saved), "--commitment", "0" * 64])

    out = capsys.readouterr().out
    assert code == 1
    assert "DIFFERS: the commitment is" in out
    assert "DIFFERS: the seed does not match the commitment" in out


def test_the_home_page_says_a_drop_is_a_draw(app, client):
    make_batch(drop=make_draw_drop())
    db.session.commit()

    html = client.get("/").get_data(as_text=True)

    assert "Entries open in" in html


def test_a_draw_batch_has_no_waitlist_its_unpaid_units_go_down_the_draw_order(app):
    batch = _draw(edition_size=1, limit=1)
    _enter(batch)
    _run(batch)
    with pytest.raises(DropNotLive):
        waitlist.join(batch, 1, customer=make_customer(), now=AFTER_DROP)

"""Drops: draft → scheduled → open → closed, with frozen times, through the console and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from shop import clock, drops, inventory, timezones
from shop.errors import DropNotLive, InvalidInput, InvalidState
from shop.extensions import db
from shop.models import AuditEntry, Drop
from shop.models.drop import CLOSED, DRAFT, OPEN, SCHEDULED
from shop.models.order import PAID
from testkit.factories import (
    AFTER_DROP,
    AT_DROP,
    BEFORE_DROP,
    CLOSES_AT,
    OPENS_AT,
    make_batch,
    make_customer,
    make_drop,
    make_product,
)
from tests.support.console import browser


def _draft(maker, **kwargs) -> Drop:
    drop = make_drop(maker, state=DRAFT, opens_at=None, closes_at=None, **kwargs)
    make_batch(make_product(maker), drop, edition_size=5, limit=2)
    db.session.commit()
    return drop


def _actions(drop: Drop) -> list[str]:
    return list(
        db.session.scalars(
            select(AuditEntry.action).where(AuditEntry.drop_id == drop.id).order_by(AuditEntry.id)
        )
    )


# --- the state machine, frozen time ---------------------------------------------------------


def test_a_scheduled_drop_goes_live_on_the_second_with_no_job_running(maker):
    drop = _draft(maker)
    [batch] = drop.batches

    drops.open_drop(drop, actor=maker, now=BEFORE_DROP, at=OPENS_AT)
    db.session.commit()

    assert drop.state == SCHEDULED and drop.opens_at == OPENS_AT
    assert drop.phase(BEFORE_DROP) == "upcoming" and not drop.is_live(BEFORE_DROP)
    with pytest.raises(DropNotLive):
        inventory.hold(batch.id, 1, customer=make_customer(), now=OPENS_AT - timedelta(seconds=1))
    assert drop.is_live(OPENS_AT)
    assert inventory.hold(batch.id, 1, customer=make_customer(), now=OPENS_AT).state == "held"
    assert _actions(drop) == ["drop.scheduled"]


def test_opening_now_makes_the_drop_live_at_once(maker):
    drop = _draft(maker)

    drops.open_drop(drop, actor=maker, now=AT_DROP)

    assert drop.state == OPEN and drop.opens_at == AT_DROP and drop.is_live(AT_DROP)
    assert _actions(drop) == ["drop.opened"]


def test_a_scheduled_opening_can_be_moved_or_brought_forward_before_it_happens(maker):
    drop = _draft(maker)
    drops.open_drop(drop, actor=maker, now=BEFORE_DROP, at=OPENS_AT)

    drops.open_drop(drop, actor=maker, now=BEFORE_DROP, at=OPENS_AT + timedelta(hours=2))
    assert drop.opens_at == OPENS_AT + timedelta(hours=2) and drop.state == SCHEDULED
    drops.open_drop(drop, actor=maker, now=BEFORE_DROP)
    assert drop.state == OPEN and drop.opens_at == BEFORE_DROP


def test_a_live_drop_cannot_be_opened_again_or_pushed_back(maker):
    drop = _draft(maker)
    drops.open_drop(drop, actor=maker, now=OPENS_AT)

    with pytest.raises(InvalidState, match="already open"):
        drops.open_drop(drop, actor=maker, now=AT_DROP, at=AT_DROP + timedelta(days=1))
    assert drop.state == OPEN and drop.opens_at == OPENS_AT
    assert _actions(drop) == ["drop.opened"]


def test_a_drop_with_no_batches_cannot_open(maker):
    drop = make_drop(maker, state=DRAFT, opens_at=None, closes_at=None)

    with pytest.raises(InvalidState, match="at least one batch"):
        drops.open_drop(drop, actor=maker, now=AT_DROP)
    assert drop.state == DRAFT


def test_closing_now_stops_new_holds_but_earlier_holds_can_still_be_paid(maker):
    drop = _draft(maker)
    [batch] = drop.batches
    drops.open_drop(drop, actor=maker, now=OPENS_AT)
    earlier = inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP)
    db.session.commit()

    drops.close_drop(drop, actor=maker, now=AT_DROP + timedelta(minutes=1))
    db.session.commit()

    assert drop.state == CLOSED and drop.phase(AT_DROP + timedelta(minutes=1)) == CLOSED
    with pytest.raises(DropNotLive):
        inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP + timedelta(minutes=2))
    assert inventory.confirm(earlier, now=AT_DROP + timedelta(minutes=3))
    assert earlier.state == PAID
    assert _actions(drop) == ["drop.opened", "drop.closed"]


def test_a_scheduled_close_happens_on_the_second(maker):
    drop = _draft(maker)
    [batch] = drop.batches
    drops.open_drop(drop, actor=maker, now=OPENS_AT)

    drops.close_drop(drop, actor=maker, now=AT_DROP, at=CLOSES_AT)
    db.session.commit()

    assert drop.state == OPEN and drop.closes_at == CLOSES_AT
    assert drop.is_live(CLOSES_AT - timedelta(seconds=1)) and not drop.is_live(CLOSES_AT)
    assert drop.phase(AFTER_DROP) == CLOSED
    with pytest.raises(DropNotLive):
        inventory.hold(batch.id, 1, customer=make_customer(), now=CLOSES_AT)
    assert _actions(drop) == ["drop.opened", "drop.close_scheduled"]


def test_a_closed_drop_stays_closed(maker):
    drop = _draft(maker)
    drops.open_drop(drop, actor=maker, now=OPENS_AT)
    drops.close_drop(drop, actor=maker, now=AT_DROP)

    with pytest.raises(InvalidState, match="closed drop stays closed"):
        drops.open_drop(drop, actor=maker, now=AFTER_DROP)
    with pytest.raises(InvalidState, match="already closed"):
        drops.close_drop(drop, actor=maker, now=AFTER_DROP)
    assert _actions(drop) == ["drop.opened", "drop.closed"]


def test_a_drop_past_its_closing_time_cannot_be_reopened_by_a_new_closing_time(maker):
    drop = _draft(maker)
    drops.open_drop(drop, actor=maker, now=OPENS_AT)
    drops.close_drop(drop, actor=maker, now=AT_DROP, at=CLOSES_AT)

    with pytest.raises(InvalidState, match="already closed"):
        drops.close_drop(drop, actor=maker, now=AFTER_DROP, at=AFTER_DROP + timedelta(days=1))
    assert drop.closes_at == CLOSES_AT


def test_a_drop_that_never_opened_cannot_be_closed_only_put_back_to_draft(maker):
    drop = _draft(maker)
    drops.open_drop(drop, actor=maker, now=BEFORE_DROP, at=OPENS_AT)

    with pytest.raises(InvalidState, match="hasn't opened yet"):
        drops.close_drop(drop, actor=maker, now=BEFORE_DROP)
    drops.unschedule_drop(drop, actor=maker, now=BEFORE_DROP)

    assert drop.state == DRAFT
    assert _actions(drop) == ["drop.scheduled", "drop.unscheduled"]


def test_a_drop_that_has_opened_cannot_go_back_to_draft(maker):
    drop = _draft(maker)
    drops.open_drop(drop, actor=maker, now=BEFORE_DROP, at=OPENS_AT)

    with pytest.raises(InvalidState, match="not yet open"):
        drops.unschedule_drop(drop, actor=maker, now=AT_DROP)
    assert drop.state == SCHEDULED


def test_a_scheduled_close_can_be_removed_before_it_happens(maker):
    drop = _draft(maker)
    drops.open_drop(drop, actor=maker, now=OPENS_AT)
    drops.close_drop(drop, actor=maker, now=AT_DROP, at=CLOSES_AT)

    drops.cancel_scheduled_close(drop, actor=maker, now=AT_DROP)

    assert drop.closes_at is None and drop.is_live(AFTER_DROP)
    with pytest.raises(InvalidState):
        drops.cancel_scheduled_close(drop, actor=maker, now=AT_DROP)


def test_a_closing_time_before_the_opening_is_refused(maker):
    drop = _draft(maker)
    drops.open_drop(drop, actor=maker, now=BEFORE_DROP, at=OPENS_AT)

    with pytest.raises(InvalidState, match="after the opening time"):
        drops.close_drop(drop, actor=maker, now=BEFORE_DROP, at=OPENS_AT - timedelta(minutes=1))


# --- time zones -----------------------------------------------------------------------------


def test_a_time_typed_in_the_makers_zone_is_stored_in_utc():
    typed = datetime(2030, 1, 15, 9, 0)
    assert timezones.to_utc(typed, "America/New_York") == datetime(2030, 1, 15, 14, 0, tzinfo=UTC)
    assert timezones.to_utc(typed, "Asia/Tokyo") == datetime(2030, 1, 15, 0, 0, tzinfo=UTC)
    assert timezones.to_local(datetime(2030, 7, 1, 16, 0, tzinfo=UTC), "Europe/Berlin") == datetime(
        2030, 7, 1, 18, 0
    )


def test_a_time_the_clocks_skip_is_refused_not_moved():
    with pytest.raises(InvalidInput, match="doesn't exist in America/New_York"):
        timezones.to_utc(datetime(2030, 3, 10, 2, 30), "America/New_York")


# --- through the console (real clock) -------------------------------------------------------


def test_opening_needs_the_confirmation_box(app, maker):
    drop = _draft(maker)
    console = browser(app, maker)

    response = console.form(f"/maker/drops/{drop.id}/open", {"when": "now"})

    assert response.status_code == 422
    assert "Tick the box to confirm." in response.get_data(as_text=True)
    assert db.session.get(Drop, drop.id).state == DRAFT


def test_opening_now_from_the_console_goes_live_and_shows_the_live_page(app, maker):
    drop = _draft(maker)
    console = browser(app, maker)

    response = console.form(f"/maker/drops/{drop.id}/open", {"when": "now", "confirm": "y"})

    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/maker/drops/{drop.id}/live")
    drop = db.session.get(Drop, drop.id)
    assert drop.state == OPEN and drop.is_live(clock.now())
    page = console.get(f"/maker/drops/{drop.id}").get_data(as_text=True)
    assert "Opened the drop" in page and maker.display_name in page


def test_a_second_open_from_another_tab_changes_nothing_and_says_why(app, maker):
    drop = _draft(maker)
    console = browser(app, maker)
    console.form(f"/maker/drops/{drop.id}/open", {"when": "now", "confirm": "y"})

    again = console.form(f"/maker/drops/{drop.id}/open", {"when": "now", "confirm": "y"})

    assert again.status_code == 409
    assert "already open" in again.get_data(as_text=True)
    assert _actions(drop) == ["drop.opened"]


def _schedule(console, drop: Drop, step: str, at: str):
    """Confirm the ``open`` or ``close`` step for ``at``, typed in the maker's zone."""
    return console.form(
        f"/maker/drops/{drop.id}/{step}", {"when": "later", "at": at, "confirm": "y"}
    )


def test_scheduling_reads_the_time_in_the_makers_zone(app, maker):
    maker.timezone = "America/New_York"
    drop = _draft(maker)
    console = browser(app, maker)

    response = _schedule(console, drop, "open", "2030-01-15T09:00")

    assert response.status_code == 303
    drop = db.session.get(Drop, drop.id)
    assert drop.state == SCHEDULED
    assert drop.opens_at == datetime(2030, 1, 15, 14, 0, tzinfo=UTC)
    page = console.get(f"/maker/drops/{drop.id}").get_data(as_text=True)
    assert "15 Jan 2030, 09:00 EST" in page


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("2001-01-01T09:00", "already passed"),
        ("", "Enter the date and time"),
        ("2031-03-09T02:30", "doesn&#39;t exist in America/New_York"),
        ("next tuesday", "Not a valid datetime value"),
    ],
)
def test_a_bad_opening_time_is_refused_with_a_reason(app, maker, at, message):
    maker.timezone = "America/New_York"
    drop = _draft(maker)
    console = browser(app, maker)

    response = _schedule(console, drop, "open", at)

    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.get(Drop, drop.id).state == DRAFT


def test_closing_from_the_console_needs_confirmation_and_is_recorded(app, maker):
    drop = _draft(maker)
    drops.open_drop(drop, actor=maker, now=clock.now() - timedelta(minutes=5))
    db.session.commit()
    console = browser(app, maker)

    unconfirmed = console.form(f"/maker/drops/{drop.id}/close", {"when": "now"})
    closed = console.form(f"/maker/drops/{drop.id}/close", {"when": "now", "confirm": "y"})
    again = console.form(f"/maker/drops/{drop.id}/close", {"when": "now", "confirm": "y"})

    assert unconfirmed.status_code == 422
    assert closed.status_code == 303 and again.status_code == 409
    assert db.session.get(Drop, drop.id).state == CLOSED
    page = console.get(f"/maker/drops/{drop.id}").get_data(as_text=True)
    assert "Closed the drop" in page
    assert _actions(drop) == ["drop.opened", "drop.closed"]


def test_a_scheduled_close_from_the_console_keeps_the_drop_open_until_then(app, maker):
    maker.timezone = "Europe/Berlin"
    drop = _draft(maker)
    drops.open_drop(drop, actor=maker, now=clock.now() - timedelta(minutes=5))
    db.session.commit()
    console = browser(app, maker)

    response = _schedule(console, drop, "close", "2031-07-01T18:00")

    assert response.status_code == 303
    drop = db.session.get(Drop, drop.id)
    assert drop.state == OPEN and drop.closes_at == datetime(2031, 7, 1, 16, 0, tzinfo=UTC)


def test_a_new_drop_from_the_console_is_a_private_draft_with_its_batches(app, maker):
    maker.timezone = "America/New_York"
    batch = make_batch(make_product(maker), live=False)
    db.session.commit()
    console = browser(app, maker)

    response = console.form(
        "/maker/drops/new",
        {
            "title": "The Winter Release",
            "story": "Two *spirits*.",
            "batches": [batch.id],
            "opens_local": "2030-12-01T12:00",
        },
    )

    assert response.status_code == 303
    drop = db.session.scalar(select(Drop))
    assert (drop.title, drop.slug, drop.state) == (
        "The Winter Release",
        "the-winter-release",
        DRAFT,
    )
    assert [b.id for b in drop.batches] == [batch.id]
    assert drop.opens_at == datetime(2030, 12, 1, 17, 0, tzinfo=UTC)
    assert console.get("/drops/the-winter-release").status_code == 404  # drafts are private


def test_a_drop_address_typed_by_the_maker_must_be_free(app, maker):
    make_drop(maker).slug = "winter"
    db.session.commit()
    console = browser(app, maker)

    response = console.form("/maker/drops/new", {"title": "Winter", "slug": "Winter"})

    assert response.status_code == 422
    assert "/drops/winter is already taken" in response.get_data(as_text=True)


def test_a_maker_sets_their_time_zone(app, maker):
    console = browser(app, maker)

    ok = console.form("/maker/settings", {"display_name": "Ada", "timezone": "Asia/Tokyo"})
    bad = console.form("/maker/settings", {"display_name": "Ada", "timezone": "Mars/Olympus"})

    assert ok.status_code == 303 and bad.status_code == 422
    assert maker.timezone == "Asia/Tokyo" and maker.display_name == "Ada"


# --- the CLI ---------------------------------------------------------------------------------


def test_the_cli_opens_a_drop_now(runner, maker):
    drop = _draft(maker)

    result = runner.invoke(args=["shop", "open-drop", drop.slug])

    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert drop.state == OPEN and drop.is_live(clock.now())
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.drop_id == drop.id))
    assert entry.action == "drop.opened" and entry.actor_id is None


def test_the_cli_schedules_an_opening_and_a_closing(runner, maker):
    drop = _draft(maker)

    opened = runner.invoke(
        args=["shop", "open-drop", drop.slug, "--at", "2031-01-01T17:00:00+01:00"]
    )
    closed = runner.invoke(args=["shop", "close-drop", drop.slug, "--at", "2031-01-02T17:00:00Z"])

    assert opened.exit_code == 0 and closed.exit_code == 0, opened.output + closed.output
    db.session.expire_all()
    assert drop.state == SCHEDULED
    assert drop.opens_at == datetime(2031, 1, 1, 16, 0, tzinfo=UTC)
    assert drop.closes_at == datetime(2031, 1, 2, 17, 0, tzinfo=UTC)


def test_the_cli_closes_a_live_drop_and_refuses_to_close_it_twice(runner, maker):
    drop = _draft(maker)
    drops.open_drop(drop, actor=None, now=clock.now() - timedelta(minutes=1))
    db.session.commit()

    first = runner.invoke(args=["shop", "close-drop", drop.slug])
    second = runner.invoke(args=["shop", "close-drop", drop.slug])

    assert first.exit_code == 0, first.output
    assert second.exit_code == 1 and "already closed" in second.output
    db.session.expire_all()
    assert drop.state == CLOSED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["open-drop", "no-such-drop"], "no drop with slug"),
        (["open-drop", "{slug}", "--at", "tomorrow"], "not an ISO 8601 time"),
        (["open-drop", "{slug}", "--at", "2031-01-01T17:00:00"], "give a time zone"),
        (["close-drop", "{slug}"], "hasn't opened yet"),
    ],
)
def test_the_cli_refuses_bad_input_and_changes_nothing(runner, maker, args, message):
    drop = _draft(maker)

    result = runner.invoke(args=["shop", *(a.format(slug=drop.slug) for a in args)])

    assert result.exit_code != 0
    assert message in result.output
    db.session.expire_all()
    assert drop.state == DRAFT

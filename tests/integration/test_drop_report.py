"""The report after a drop (issue 18, item 4), on SQLite and PostgreSQL, with refusals counted
in Redis and in memory: a scripted drop is bought through the real buy view and paid at the
Stripe emulator, and every figure of the report equals the one computed here from the orders.

The script: an earlier drop where one customer (the returning buyer) paid; then the drop under
report, live for an hour, with
- rye (3 bottles at $25.00, limit 2): the returning buyer pays for 1 and a new buyer for 2 — sold
  out — and 1 of those 2 is refunded; one more attempt finds it sold out;
- brandy (6 bottles at €40.00, limit 2, 18+, ships to DE and FR): one hold expires (the sweeper,
  after Stripe), one is cancelled by its customer, one buyer pays for 2 shipped to France, one
  hold is still running; attempts refused for the limit, age, destination and a bad quantity,
  and one after the drop is closed.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from shop import clock, drop_report, drops, orders, refunds, refusal_counts, sweeper, worker
from shop.extensions import db
from shop.models import Batch, Drop, Order, RefusalCount, UnitRefund
from shop.models.drop import CLOSED
from shop.models.order import CANCELLED, EXPIRED, HELD, REFUNDED
from stripe_emulator.state import demo_address
from testkit.factories import make_batch, make_customer, make_drop, make_maker, make_product
from tests.support import redis_server
from tests.support.console import browser
from tests.support.stripe import session_id_from, stripe_settings

ADULT = {"birth_date": "1980-01-01", "ship_country": "DE"}
SVG = re.compile(r"<svg\b.*?</svg>", re.S)


@pytest.fixture(params=["memory", "redis"])
def counting(request):
    """Where refusals are counted: this process's memory, or Redis under a private prefix."""
    with redis_server.shared_store(request.param) as overrides:
        yield overrides


@pytest.fixture
def app_overrides(emulator, counting):
    return {**stripe_settings(emulator), **counting}


def _hold(app, customer, batch, quantity: int, **fields) -> str:
    """Press the buy button, then follow to Stripe: the Checkout Session id of the hold."""
    shopper = browser(app, customer)
    held = shopper.form(f"/checkout/batches/{batch.id}", {"quantity": quantity, **fields})
    assert held.status_code == 303, held.get_data(as_text=True)[:500]
    return session_id_from(shopper.get(held.headers["Location"]).headers["Location"])


def _pay(emulator, session_id: str, **fields) -> Order:
    emulator.complete(session_id, **fields)
    orders.fulfil(session_id, now=clock.now())
    db.session.expire_all()
    return db.session.scalar(select(Order).where(Order.checkout_session_id == session_id))


def _refused(app, customer, batch, code: str, quantity="1", **fields) -> None:
    """Press the buy button and be refused for ``code`` (asked as JSON, to read the code)."""
    answer = browser(app, customer).form(
        f"/checkout/batches/{batch.id}",
        {"quantity": quantity, **fields},
        headers={"Accept": "application/json"},
    )
    assert answer.json["error"]["code"] == code, answer.get_data(as_text=True)[:500]


@pytest.fixture
def scripted(app, emulator):
    """The drop of the module's docstring, bought and refused: its maker, drop, rye, brandy."""
    maker = make_maker(name="Ada Marsh")
    before = make_drop(maker, opens_at=clock.now() - timedelta(days=30), closes_at=None)
    old = make_batch(make_product(maker, name="Old Rye"), before, edition_size=5)
    drop = make_drop(maker, opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    rye = make_batch(make_product(maker, name="Rye"), drop, edition_size=3, price=2500, limit=2)
    brandy = make_batch(
        make_product(maker, name="Brandy"), drop, edition_size=6, price=4000, limit=2
    )
    brandy.currency, brandy.minimum_age, brandy.ships_to = "eur", 18, "DE,FR"
    regular, newcomer, quitter, dawdler, french, waiting, refused = (
        make_customer() for _ in range(7)
    )
    db.session.commit()

    _pay(emulator, _hold(app, regular, old, 1))  # the earlier drop
    _pay(emulator, _hold(app, regular, rye, 1))
    two = _pay(emulator, _hold(app, newcomer, rye, 2))
    _refused(app, refused, rye, "sold_out")
    refunds.refund_units(two, [two.units[0].serial], actor=maker, now=clock.now())

    expiring = _hold(app, dawdler, brandy, 1, **ADULT)
    cancelled = _hold(app, quitter, brandy, 1, **ADULT)
    _pay(emulator, _hold(app, french, brandy, 2, **ADULT), shipping_address=demo_address("FR"))
    _hold(app, waiting, brandy, 1, **ADULT)
    refusal_counts.flush()  # some counts stored, the rest still waiting: the report adds both
    _refused(app, french, brandy, "limit_reached", **ADULT)  # has 2 of 2 already
    _refused(app, refused, brandy, "age_restricted", birth_date=f"{date.today().year - 10}-01-01")
    _refused(app, refused, brandy, "cannot_ship_there", birth_date="1980-01-01", ship_country="US")
    _refused(app, refused, brandy, "invalid_quantity", quantity="0", **ADULT)

    order = db.session.scalar(select(Order).where(Order.checkout_session_id == cancelled))
    assert orders.cancel(order, now=clock.now()) == orders.RELEASED
    db.session.execute(
        Order.__table__.update()
        .where(Order.checkout_session_id == expiring)
        .values(hold_expires_at=clock.now() - timedelta(minutes=1))
    )
    db.session.commit()
    assert sweeper.sweep(clock.now())["released"] == 1
    drops.close_drop(drop, actor=maker, now=clock.now())
    db.session.commit()
    _refused(app, refused, brandy, "drop_not_live", **ADULT)
    db.session.expire_all()
    return SimpleNamespace(maker=maker, drop=drop, rye=rye, brandy=brandy)


# --- the figures, computed here from the orders ------------------------------------------------


def _expected(batch: Batch) -> dict:
    found = list(db.session.scalars(select(Order).where(Order.batch_id == batch.id)))
    paid = [o for o in found if o.paid_at is not None]
    by_units = {
        r.order_id: r.amount
        for r in db.session.scalars(
            select(UnitRefund).where(UnitRefund.order_id.in_([o.id for o in found]))
        )
    }
    refunded = Counter()
    for o in paid:
        refunded[o.currency] += o.amount_total if o.state == REFUNDED else by_units.get(o.id, 0)
    return {
        "holds": len(found),
        "units_held": sum(o.quantity for o in found),
        "paid": len(paid),
        "units_paid": sum(o.quantity for o in paid),
        "expired": sum(o.state == EXPIRED for o in found),
        "released": sum(o.state == CANCELLED for o in found),
        "held": sum(o.state == HELD for o in found),
        "taken": Counter(
            {
                c: sum(o.amount_total for o in paid if o.currency == c)
                for c in {o.currency for o in paid}
            }
        ),
        "refunded": +refunded,
        "countries": Counter(o.shipping["address"]["country"] for o in paid if o.state != REFUNDED),
        "last_paid": max((o.paid_at for o in paid), default=None),
    }


def _figures(f: drop_report.Figures) -> dict:
    return {
        "holds": f.holds,
        "units_held": f.units_held,
        "paid": f.outcomes["paid"],
        "units_paid": f.units_paid,
        "expired": f.outcomes["expired"],
        "released": f.outcomes["released"],
        "held": f.outcomes["held"],
        "taken": +f.taken,
        "refunded": +f.refunded,
        "countries": +f.countries,
    }


def test_the_reports_figures_are_the_ones_the_orders_give(app, scripted):
    report = drop_report.drop_report(scripted.drop, clock.now())

    [for_rye, for_brandy] = report.batches
    for row, batch in ((for_rye, scripted.rye), (for_brandy, scripted.brandy)):
        expected = _expected(batch)
        last_paid = expected.pop("last_paid")
        assert _figures(row.figures) == expected, batch.title
        if batch.id == scripted.rye.id:  # sold out: every unit paid, from the opening to the last
            assert row.sold_out_after == last_paid - scripted.drop.opens_at
        else:
            assert row.sold_out_after is None
    assert (for_rye.figures.holds, for_rye.figures.outcomes["paid"]) == (2, 2)
    assert (for_brandy.figures.outcomes["expired"], for_brandy.figures.outcomes["released"]) == (
        1,
        1,
    )
    assert for_rye.figures.conversion == 100.0 and for_brandy.figures.conversion == 25.0
    assert for_rye.figures.refunded == Counter({"usd": 2500})
    assert for_brandy.figures.countries == Counter({"FR": 1})
    assert report.total.taken.keys() == {"usd", "eur"}
    assert report.sold_out_after is None  # the brandy never sold out


def test_refused_attempts_are_counted_by_reason_and_batch_without_a_row_each(app, scripted):
    report = drop_report.drop_report(scripted.drop, clock.now())

    assert report.batches[0].figures.refused == Counter({"sold_out": 1})
    assert report.batches[1].figures.refused == Counter(
        {
            "limit_reached": 1,
            "age_restricted": 1,
            "cannot_ship_there": 1,
            "invalid_quantity": 1,
            "drop_not_live": 1,
        }
    )
    stored = db.session.scalar(select(RefusalCount).where(RefusalCount.batch_id == scripted.rye.id))
    assert stored.count == 1  # flushed mid-script; the brandy's are still waiting
    assert (
        db.session.scalar(select(RefusalCount).where(RefusalCount.batch_id == scripted.brandy.id))
        is None
    )

    drop_id = scripted.drop.id
    stored = worker.run_pass(clock.now(), jobs=("refusals",))  # what the worker does each sweep
    assert stored.lines == ["refusals: 5 stored"]
    again = drop_report.drop_report(db.session.get(Drop, drop_id), clock.now())
    assert [r.figures.refused for r in again.batches] == [r.figures.refused for r in report.batches]


def test_buyers_are_first_time_or_returning_to_the_maker(app, scripted):
    report = drop_report.drop_report(scripted.drop, clock.now())

    assert [(r.figures.first_time, r.figures.returning) for r in report.batches] == [
        (1, 1),
        (1, 0),
    ]
    assert (report.total.first_time, report.total.returning) == (2, 1)


def test_the_units_per_minute_add_up_to_the_units_taken_and_paid(app, scripted):
    report = drop_report.drop_report(scripted.drop, clock.now())

    assert report.bucket_minutes == 2  # opened an hour ago: 61 one-minute bars are too many
    assert sum(m.taken for m in report.minutes) == report.total.units_held == 8
    assert sum(m.paid for m in report.minutes) == report.total.units_paid == 5
    assert report.minutes[0].start == scripted.drop.opens_at.replace(second=0, microsecond=0)


# --- the page and its CSV ------------------------------------------------------------------


def test_the_report_page_shows_the_figures_and_a_well_formed_accessible_chart(app, scripted):
    page = browser(app, scripted.maker).get(f"/maker/drops/{scripted.drop.id}/report")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    [svg] = SVG.findall(html)
    chart = ET.fromstring(svg)  # noqa: S314 - the shop's own page
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert chart.get("role") == "img"
    assert chart.get("aria-labelledby") == "chart-title chart-desc"
    assert chart.find("svg:title", ns).text == "Units taken per 2 minutes"
    assert "8 units taken" in chart.find("svg:desc", ns).text
    bars = chart.findall(".//svg:rect[@class='chart__bar']", ns)
    assert len(bars) == len(drop_report.drop_report(scripted.drop, clock.now()).minutes)
    assert "The chart's numbers as a table" in html
    assert "Holds and what became of them" in html and "France" in html
    assert "$25.00" in html and "€80.00" in html


def test_the_csv_has_every_figure_one_per_line(app, scripted):
    answer = browser(app, scripted.maker).get(f"/maker/drops/{scripted.drop.id}/report.csv")

    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert f'filename="report-{scripted.drop.slug}.csv"' in answer.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0] == ["section", "batch", "measure", "currency", "value"]
    cells = {tuple(row[:4]): row[4] for row in rows[1:]}
    assert cells[("holds", scripted.rye.title, "taken", "")] == "2"
    assert cells[("holds", scripted.brandy.title, "expired", "")] == "1"
    assert cells[("holds", scripted.brandy.title, "released", "")] == "1"
    assert cells[("holds", "all batches", "paid", "")] == "3"
    assert cells[("refused", scripted.brandy.title, "cannot_ship_there", "")] == "1"
    assert cells[("refused", scripted.rye.title, "sold_out", "")] == "1"
    assert cells[("money", scripted.rye.title, "refunded", "USD")] == "25.00"
    assert cells[("countries", scripted.brandy.title, "FR", "")] == "1"
    assert cells[("buyers", "all batches", "returning", "")] == "1"
    assert int(cells[("sold out", scripted.rye.title, "seconds after opening", "")]) > 0
    taken = [int(v) for k, v in cells.items() if k[0].startswith("units taken per")]
    assert sum(taken) == 8


def test_a_title_that_looks_like_a_formula_is_exported_as_text(app, scripted):
    scripted.drop.title = "=HYPERLINK(1)"
    db.session.commit()

    body = (
        browser(app, scripted.maker)
        .get(f"/maker/drops/{scripted.drop.id}/report.csv")
        .get_data(as_text=True)
    )

    assert "drop,,title,,'=HYPERLINK(1)" in body


def test_another_makers_report_and_its_csv_are_not_found(app, scripted):
    stranger = browser(app, make_maker())

    for url in (
        f"/maker/drops/{scripted.drop.id}/report",
        f"/maker/drops/{scripted.drop.id}/report.csv",
    ):
        answer = stranger.get(url)
        assert answer.status_code == 404, url
        assert "Rye" not in answer.get_data(as_text=True)


def test_a_drop_with_no_hold_yet_has_an_empty_report(app):
    maker = make_maker()
    drop = make_drop(maker, state=CLOSED, opens_at=clock.now() - timedelta(days=2))
    make_batch(drop=drop)
    db.session.commit()

    page = browser(app, maker).get(f"/maker/drops/{drop.id}/report").get_data(as_text=True)

    assert "No holds yet" in page and '<svg class="chart"' not in page

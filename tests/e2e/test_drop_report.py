"""The report after a drop in Chromium: the demo's sold-out past drop (its batch bought by eight
collectors within minutes), a few refused attempts and a refunded unit; the maker reaches it
from the drop's page, reads the chart (SVG, with its table behind a disclosure), downloads the
CSV, and the page passes axe at 1280 and 390 px. Screenshots: artifacts/screenshots/
maker-report-1280.png and -390.png, and the history page beside them.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from shop import audit, demo, refusal_counts
from shop.extensions import db
from shop.models import Batch, Drop, Order, Unit, UnitRefund
from tests.e2e.conftest import SCREENSHOTS, WIDTHS
from tests.e2e.test_page_audit import AXE, log_in, problems_of

pytestmark = pytest.mark.e2e

PAST_DROP = "Highland Rye, Batch No. 6"


def _after_the_drop(shop) -> int:
    """Refusals as a crowd leaves them, and one unit refunded by the maker; the drop's id."""

    def arrange() -> int:
        drop = db.session.scalar(select(Drop).where(Drop.title == PAST_DROP))
        [batch] = db.session.scalars(select(Batch).where(Batch.drop_id == drop.id))
        for reason, times in (("sold_out", 23), ("limit_reached", 4), ("drop_not_live", 9)):
            for _ in range(times):
                refusal_counts.count(batch.id, reason)
        order = db.session.scalars(select(Order).where(Order.batch_id == batch.id)).first()
        unit = db.session.scalars(select(Unit).where(Unit.order_id == order.id)).first()
        refund = UnitRefund(
            order_id=order.id,
            quantity=1,
            amount=order.unit_price,
            currency=order.currency,
            reason="Arrived broken.",
            refund_id="re_demo",
            created_at=order.paid_at + timedelta(days=2),
        )
        db.session.add(refund)
        db.session.flush()
        unit.refunded_at, unit.unit_refund_id = refund.created_at, refund.id
        audit.record("order.units_refunded", actor=audit.CLI, batch=batch, order=order)
        return drop.id

    return shop.run(arrange)


def _shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(150)
        page.screenshot(path=str(SCREENSHOTS / f"maker-{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


def test_a_maker_reads_the_report_of_a_sold_out_drop_and_downloads_it(demo_shop, browser_page):
    drop_id = _after_the_drop(demo_shop)
    page, base = browser_page, demo_shop.url
    log_in(page, base, demo.MAKER_EMAIL, demo.MAKER_PASSWORD)

    page.goto(f"{base}/maker/drops/{drop_id}")
    page.get_by_role("link", name="Report").click()
    expect(page).to_have_url(f"{base}/maker/drops/{drop_id}/report")
    expect(page.get_by_role("heading", name="Report", exact=True)).to_be_visible()
    expect(page.get_by_text("The drop is closed: these are its final figures.")).to_be_visible()

    chart = page.get_by_role("img", name="Units taken per minute")
    expect(chart).to_be_visible()
    assert chart.locator("rect.chart__bar").count() >= 3
    table = page.get_by_role("table", name="Units taken and paid per minute")
    expect(table).to_be_hidden()
    page.get_by_text("The chart's numbers as a table").click()
    expect(table).to_be_visible()

    holds = page.get_by_role("table", name="Holds per batch by outcome")
    expect(holds.get_by_role("cell", name="100.0 %")).to_be_visible()  # every hold was paid
    refused = page.get_by_role("table", name="Refused attempts to buy, by reason and batch")
    expect(refused.get_by_role("row", name="Sold out 23")).to_be_visible()
    expect(page.get_by_text("Limit reached: 4 over the per-customer limit")).to_be_visible()
    expect(page.locator(".report-facts")).to_contain_text("Sold out in")
    expect(page.locator(".report-facts")).not_to_contain_text("not sold out")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.reader(io.StringIO(download.value.path().read_text("utf-8-sig"))))
    cells = {tuple(row[:4]): row[4] for row in rows[1:]}
    assert cells[("refused", "all batches", "sold_out", "")] == "23"
    assert cells[("money", "all batches", "units refunded", "")] == "1"

    assert problems_of(page, AXE.read_text(encoding="utf-8")) == []
    assert page.problems.seen == []
    _shoot(page, "report")

    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    expect(page.get_by_text("Refunded some units").first).to_be_visible()
    expect(page.get_by_text("Command line").first).to_be_visible()
    assert problems_of(page, AXE.read_text(encoding="utf-8")) == []
    _shoot(page, "history")

"""A customer in Chromium presses Buy a moment after the last bottle was taken: the small sold-out
page (issue 15) fits both widths, passes axe, and its waitlist form puts them in line.

Screenshots at 1280 and 390 px go to artifacts/screenshots/storefront-sold-out-*.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from shop import clock, demo, inventory
from shop.extensions import db
from shop.models import Batch, Product, User
from tests.e2e.test_page_audit import AXE, log_in, problems_of

pytestmark = pytest.mark.e2e


def _take_the_last_brandy() -> int:
    """The brandy's edition cut to 4 bottles, and two collectors holding 2 each (unpaid)."""
    brandy = db.session.scalar(
        select(Batch).join(Product).where(Product.slug == "orchard-apple-brandy", Batch.number == 3)
    )
    inventory.resize_edition(brandy, 4)
    collectors = db.session.scalars(
        select(User).where(User.email.like("collector%")).order_by(User.id).limit(2)
    )
    for collector in collectors:
        inventory.hold(brandy.id, 2, customer=collector, now=clock.now())
    return brandy.id


def test_a_buy_after_the_last_bottle_went_gets_the_sold_out_page_and_can_join_the_line(
    demo_shop, browser_page, shoot
):
    page = browser_page
    base = demo_shop.url
    log_in(page, base, demo.CUSTOMER_EMAIL, demo.CUSTOMER_PASSWORD)
    page.goto(f"{base}/drops/winter-release")
    brandy = page.locator(".batch-card", has_text="Orchard Apple Brandy")
    expect(brandy.get_by_role("button", name=re.compile(r"^Buy"))).to_be_visible()

    brandy_id = demo_shop.run(_take_the_last_brandy)  # while the customer makes up their mind
    brandy.get_by_role("button", name=re.compile(r"^Buy")).click()

    expect(page.get_by_role("heading", name="Sold out", level=1)).to_be_visible()
    expect(page).to_have_title(re.compile(r"^Sold out: Orchard Apple Brandy, Batch No\. 3"))
    expect(page.locator(".sold-out__batch")).to_have_text("Orchard Apple Brandy, Batch No. 3")
    expect(page.get_by_role("heading", name="What happens next")).to_be_visible()
    expect(page.locator(".batch-card")).to_have_count(0)  # not the drop again
    back = page.get_by_role("link", name="Back to The Winter Release")
    expect(back).to_have_attribute("href", f"/drops/winter-release#buy-{brandy_id}")
    shoot(page, "sold-out")
    assert page.problems.seen == [f"409: POST {base}/checkout/batches/{brandy_id}"]
    page.problems.seen.clear()  # that refusal was the point
    assert problems_of(page, AXE.read_text(encoding="utf-8")) == []

    page.get_by_label("Quantity").select_option("2")
    page.get_by_role("button", name="Join the waitlist").click()

    expect(page).to_have_url(re.compile(rf"/drops/winter-release#buy-{brandy_id}$"))
    expect(page.get_by_text("You're No. 1 in line for Batch No. 3")).to_be_visible()
    assert page.problems.seen == []

"""A customer in Chromium enters a draw, wins, and pays (issue 17, item 1): the demo's second
cellar draw, its entries opened now; the commitment on the page before the draw, the entry id
after entering, the win with its deadline and the pay button, the emulator's hosted checkout,
the numbered bottles, and the published draw, checked by the offline verifier.

Screenshots at 1280 and 390 px go to artifacts/screenshots/storefront-draw-*.png.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from shop import clock, demo, draws, verify_draw
from shop.extensions import db
from shop.models import Drop, User
from tests.e2e.conftest import pay_on_the_hosted_page

pytestmark = pytest.mark.e2e

SLUG = "second-cellar-draw"


def _drop() -> Drop:
    return db.session.scalar(select(Drop).where(Drop.slug == SLUG))


def test_a_customer_enters_a_draw_wins_and_pays(demo_shop, browser_page, shoot):
    page = browser_page
    base = demo_shop.url

    def open_entries():
        drop = _drop()
        drop.opens_at = clock.now() - timedelta(hours=1)
        drop.closes_at = clock.now() + timedelta(hours=1)
        return drop.draw_commitment

    commitment = demo_shop.run(open_entries)

    # --- the demo customer logs in and opens the draw: its commitment is on the page
    page.goto(f"{base}/account/login?next=/drops/{SLUG}")
    page.get_by_label("Email").fill(demo.CUSTOMER_EMAIL)
    page.get_by_label("Password").fill(demo.CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(rf"/drops/{SLUG}$"))
    expect(page.locator(".draw-notice")).to_contain_text("This drop is a draw")
    expect(page.locator(".draw-notice code")).to_have_text(commitment)
    card = page.locator(".batch-card", has_text="Batch No. 2")
    expect(card.get_by_role("button", name="Enter the draw")).to_be_visible()
    shoot(page, "draw-drop")

    # --- enters for two bottles and is given an entry id
    card.get_by_label("Quantity").select_option("2")
    card.get_by_role("button", name="Enter the draw").click()
    expect(page.locator(".flash--success")).to_contain_text("You're in the draw")
    card = page.locator(".batch-card", has_text="Batch No. 2")
    expect(card).to_contain_text("You're in the draw for 2 bottles")
    entry_id = card.locator("code").inner_text()
    assert len(entry_id) >= 16
    shoot(page, "draw-entered")

    # --- the draw page shows their entry, before the draw
    page.goto(f"{base}/drops/{SLUG}/draw")
    expect(page.locator(".draw__mine")).to_contain_text(entry_id)

    # --- three collectors enter too; then entries close and the worker draws
    def close_and_draw():
        drop = _drop()
        collectors = db.session.scalars(
            select(User).where(User.email.like("collector%")).order_by(User.id).limit(3)
        ).all()
        for collector in collectors:
            draws.enter(drop, drop.batches[0].id, 2, customer=collector, now=clock.now())
        db.session.flush()
        drop.closes_at = clock.now() - timedelta(seconds=1)
        db.session.flush()
        return draws.run_draw(drop, now=clock.now()).winners

    assert demo_shop.run(close_and_draw) == 4  # 8 bottles asked, 18 on offer: all drawn

    # --- the drop page says they won, until when, and offers to pay
    page.goto(f"{base}/drops/{SLUG}")
    card = page.locator(".batch-card", has_text="Batch No. 2")
    expect(card).to_contain_text("You were drawn.")
    expect(card).to_contain_text("2 bottles are held for you until")
    shoot(page, "draw-won")
    card.get_by_role("button", name=re.compile(r"^Pay")).click()

    # --- where it ships (shipping is priced by country), then the hosted checkout
    if page.get_by_role("heading", name="Where does it ship?").is_visible():
        page.get_by_label("Ships to").select_option("US")
        page.get_by_role("button", name="Continue to payment").click()
    expect(page).to_have_url(re.compile(r"/checkout/cs_test_"))
    pay_on_the_hosted_page(page, "Sam Rivera", "4 Orchard Lane")

    # --- back in the shop with two numbered bottles
    expect(page).to_have_url(re.compile(rf"^{re.escape(base)}/checkout/success"))
    expect(page.locator("main")).to_contain_text("No. 1")
    expect(page.locator("main")).to_contain_text("No. 2")

    # --- the published draw lists the entry, and the offline verifier agrees with the shop
    page.goto(f"{base}/drops/{SLUG}/draw?entry={entry_id}")
    expect(page.locator("[role=status]")).to_contain_text(f"Entry {entry_id} is listed")
    expect(page.locator(f"#entry-{entry_id}")).to_contain_text("You")
    expect(page.locator(".draw__hash").nth(1)).to_contain_text("The seed, revealed")
    shoot(page, "draw-results")
    published = verify_draw.load(f"{base}/drops/{SLUG}/draw")
    assert verify_draw.check(published, entry=entry_id, seen=commitment) == []

    page.goto(f"{base}/drops/{SLUG}")
    expect(page.locator(".batch-card", has_text="Batch No. 2")).to_contain_text("You won and paid")
    assert page.problems.seen == []

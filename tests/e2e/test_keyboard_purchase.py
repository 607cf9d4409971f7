"""A customer who uses only the keyboard logs in, chooses two bottles, sees their total, pays on
the emulator's checkout page and gets their numbers — no mouse, no clicks. The page they land
on is audited like every other (tests/e2e/test_page_audit.py)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from shop import demo
from shop.extensions import db
from shop.models import Batch, Product
from tests.e2e.test_page_audit import AXE, problems_of

pytestmark = pytest.mark.e2e


def tab_to(page: Page, selector: str, *, most: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has the focus, as a person would."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} never got the focus after {most} tabs")


def test_a_customer_buys_two_bottles_with_the_keyboard_alone(demo_shop, browser_page):
    page = browser_page
    base = demo_shop.url
    rye_id = demo_shop.run(
        lambda: db.session.scalar(
            select(Batch.id).join(Product).where(Product.slug == "highland-rye", Batch.number == 7)
        )
    )

    page.goto(f"{base}/account/login?next=/drops/winter-release")
    tab_to(page, "#email")
    page.keyboard.type(demo.CUSTOMER_EMAIL)
    tab_to(page, "#password")
    page.keyboard.type(demo.CUSTOMER_PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{base}/drops/winter-release")

    tab_to(page, f"#birth-date-{rye_id}")  # the rye is 21+: month, day, year as typed
    page.keyboard.type("04301990")
    expect(page.locator(f"#birth-date-{rye_id}")).to_have_value("1990-04-30")
    tab_to(page, f"#ship-country-{rye_id}")
    page.keyboard.type("United States")
    expect(page.locator(f"#ship-country-{rye_id}")).to_have_value("US")
    tab_to(page, f"#quantity-{rye_id}")
    page.keyboard.press("ArrowDown")
    expect(page.locator(f"#quantity-{rye_id}")).to_have_value("2")
    buy = page.locator(f"#buy-button-{rye_id}")
    expect(buy).to_have_text("Buy — $190.00")
    tab_to(page, f"#buy-button-{rye_id}")
    page.keyboard.press("Enter")

    # The emulator's hosted page comes with its test card and a demo address filled in.
    expect(page).to_have_url(re.compile(r"/checkout/cs_test_"))
    expect(page.locator("main, body").first).to_contain_text("$190.00")
    tab_to(page, "button[type=submit]:not([name=action])")  # Pay, not "Update total"
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(rf"^{re.escape(base)}/checkout/success"))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        re.compile(r"Paid — No\.\s1 and No\.\s2 of 240")
    )
    assert page.problems.seen == []
    # The page the audit cannot reach by links: the return from Stripe.
    assert problems_of(page, AXE.read_text(encoding="utf-8"), "keyboard") == []

"""On a phone a signed-in maker's navigation folds behind one Menu button instead of wrapping
onto three rows; without scripts it stays a single row that scrolls sideways on its own."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from shop import demo
from tests.e2e.test_page_audit import log_in

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 800}


def test_a_makers_navigation_on_a_phone_is_one_row_behind_a_menu_button(demo_shop, browser_page):
    page = browser_page
    log_in(page, demo_shop.url, demo.MAKER_EMAIL, demo.MAKER_PASSWORD)
    page.set_viewport_size(PHONE)
    page.goto(f"{demo_shop.url}/drops/winter-release")

    header = page.locator(".site-header")
    menu = page.get_by_role("button", name="Menu")
    assert header.bounding_box()["height"] < 80  # one row: the brand and the button
    expect(page.get_by_role("link", name="Maker console")).to_be_hidden()
    expect(menu).to_have_attribute("aria-expanded", "false")

    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("link", name="Maker console")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    page.keyboard.press("Escape")
    expect(page.get_by_role("link", name="Maker console")).to_be_hidden()
    expect(menu).to_be_focused()
    assert page.problems.seen == []


def test_without_scripts_the_phone_navigation_is_at_most_two_rows(demo_shop, chromium):
    context = chromium.new_context(java_script_enabled=False, viewport=PHONE)
    try:
        page = context.new_page()
        log_in(page, demo_shop.url, demo.MAKER_EMAIL, demo.MAKER_PASSWORD)
        page.goto(f"{demo_shop.url}/drops/winter-release")

        expect(page.get_by_role("button", name="Menu")).to_be_hidden()
        expect(page.get_by_role("link", name="Maker console")).to_be_attached()
        assert page.locator(".site-header").bounding_box()["height"] < 130
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"]
    finally:
        context.close()

"""A maker's whole day in Chromium: product → batch with a story and a picture → drop → open →
a customer buys through the emulator's hosted page → the sale shows up live → shipped → closed.

Screenshots of every console page, at 1280 and 390 px wide, go to artifacts/screenshots/.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFilter
from playwright.sync_api import Page, expect

from shop import demo
from testkit.factories import PASSWORD, make_customer, make_maker
from tests.e2e.conftest import DemoShop, pay_on_the_hosted_page

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
MAKER_EMAIL = "ada@marshhollow.example"
CUSTOMER_EMAIL = "sam@example.com"
ZONE = "America/New_York"


@pytest.fixture
def shop(demo_shop) -> DemoShop:
    """The demo shop (tests/e2e/conftest.py) with a new maker, who starts from nothing, and a
    customer of our own."""

    def accounts():
        maker = make_maker(email=MAKER_EMAIL, name="Ada Marsh · Marsh Hollow")
        maker.timezone = ZONE
        make_customer(email=CUSTOMER_EMAIL, name="Sam Rivera")

    demo_shop.run(accounts)
    return demo_shop


def _log_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/account/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def _shoot(page: Page, name: str) -> None:
    """The page as it is now, at 1280 and at 390 px wide."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.evaluate("window.scrollTo(0, 0)")  # a sticky header stays at the top of the shot
        page.wait_for_timeout(150)
        page.screenshot(path=str(SCREENSHOTS / f"maker-{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def _bottle_photo() -> bytes:
    """A warm studio shot of a bottle, with a fake GPS-free EXIF-free body."""
    image = Image.new("RGB", (1200, 900), (236, 226, 208))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 640, 1200, 900), fill=(201, 170, 128))
    draw.rounded_rectangle((520, 250, 680, 760), radius=36, fill=(92, 46, 20))
    draw.rectangle((570, 120, 630, 270), fill=(70, 34, 14))
    draw.rectangle((540, 430, 660, 580), fill=(240, 228, 200))
    draw.text((572, 490), "No. 1", fill=(60, 40, 20))
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def test_a_maker_releases_a_batch_sells_it_live_ships_it_and_closes_the_drop(shop, chromium):
    base = shop.url
    maker_context = chromium.new_context(viewport={"width": 1280, "height": 900}, timezone_id=ZONE)
    customer_context = chromium.new_context(viewport={"width": 1280, "height": 900})
    demo_context = chromium.new_context(viewport={"width": 1280, "height": 900}, timezone_id=ZONE)
    try:
        page = maker_context.new_page()
        problems: list[str] = []
        page.on(  # script errors; a 422 page on purpose is not one
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on("pageerror", lambda e: problems.append(str(e)))

        # --- the console's front page, empty
        _log_in(page, base, MAKER_EMAIL)
        expect(page).to_have_url(f"{base}/maker/")
        expect(page.get_by_role("heading", name="Hello, Ada")).to_be_visible()
        _shoot(page, "dashboard-empty")

        # --- a product, then its first batch with a story written against the live preview
        page.get_by_role("link", name="New product").first.click()
        page.get_by_label("Name").fill("Valley Rye")
        page.get_by_label("Description").fill("A cask-strength rye from grain grown up the valley.")
        page.get_by_role("button", name="Create product").click()
        expect(page).to_have_url(re.compile(r"/maker/products/\d+/batches/new$"))
        expect(page.get_by_label("Batch number")).to_have_value("1")

        page.get_by_label("Edition size").fill("12")
        page.get_by_label("One unit", exact=True).fill("bottle")
        page.get_by_label("Several units", exact=True).fill("bottles")
        page.get_by_label("Price per unit").fill("95.00")
        page.get_by_label("Limit per customer").fill("2")
        page.get_by_label("Summary").fill("Spicy, five winters in new oak.")
        page.get_by_label("Origin story").fill(
            "## From the farm\n\nEleven acres of rye grown **four miles** up the valley.\n\n"
            "> Rye bread crust, dried apricot, clove."
        )
        preview = page.locator("[data-preview-body]")
        expect(preview.locator("strong")).to_have_text("four miles")  # rendered by the server
        expect(preview.get_by_role("heading", name="From the farm")).to_be_visible()
        page.get_by_label("Where it comes from").fill("Kessler Farm, Marsh Hollow valley")
        page.get_by_label("Produced on").fill("2021-01-19")
        page.get_by_label("Ingredients or inputs").fill("Wrens Abruzzi rye, malted barley")
        page.get_by_label("Process", exact=True).fill("Six-day ferment; double pot-distilled")
        _shoot(page, "batch-new")
        page.get_by_role("button", name="Create batch").click()
        expect(page).to_have_url(re.compile(r"/maker/batches/\d+#images$"))

        page.locator("#image").set_input_files(
            files=[{"name": "IMG_0042.jpg", "mimeType": "image/jpeg", "buffer": _bottle_photo()}]
        )
        page.get_by_label("Describe the picture").fill("Batch No. 1 on the still-house bench")
        page.get_by_role("button", name="Upload image").click()
        expect(page.locator(".image-grid img")).to_have_attribute(
            "alt", "Batch No. 1 on the still-house bench"
        )
        _shoot(page, "batch")

        # --- a drop with that batch, opened after the confirmation step
        page.get_by_role("link", name="Put in a new drop").click()
        page.get_by_label("Title").fill("The Winter Release")
        page.get_by_label("Story").fill("The spiciest rye we have made. **Numbered by hand.**")
        expect(page.locator("[data-preview-body] strong")).to_have_text("Numbered by hand.")
        expect(page.get_by_label(re.compile(r"Valley Rye, Batch No\. 1"))).to_be_checked()
        _shoot(page, "drop-new")
        page.get_by_role("button", name="Save draft").click()
        expect(page.locator(".console-head .badge")).to_have_text("Draft")
        _shoot(page, "drop-draft")

        page.get_by_role("link", name="Open or schedule…").click()
        page.get_by_role("button", name="Confirm").click()  # without the box: refused
        expect(page.get_by_text("Tick the box to confirm.")).to_be_visible()
        page.get_by_label("Open now").check()
        page.get_by_label(re.compile("I've checked the batches")).check()
        _shoot(page, "drop-open-confirm")
        page.get_by_role("button", name="Confirm").click()
        expect(page).to_have_url(re.compile(r"/maker/drops/\d+/live$"))
        expect(page.get_by_role("heading", name="Live sales")).to_be_visible()
        expect(page.locator("[data-live-status]")).to_contain_text("Refreshes every 5 s")
        live_url = page.url

        # --- a customer buys two bottles through the hosted checkout page
        shopper = customer_context.new_page()
        _log_in(shopper, base, CUSTOMER_EMAIL)
        shopper.goto(f"{base}/products/valley-rye/batches/1")
        shopper.get_by_label(re.compile("Quantity|How many", re.I)).select_option("2")
        shopper.get_by_role("button", name=re.compile("^Buy")).click()
        expect(shopper).to_have_url(re.compile(r"/checkout/cs_test_"))
        pay_on_the_hosted_page(shopper, "Sam Rivera", "1 Orchard Lane", state="NY")
        expect(shopper).to_have_url(re.compile(r"/checkout/success"))
        expect(shopper.locator("main")).to_contain_text("No.")

        # --- the maker sees the sale arrive without reloading
        expect(page).to_have_url(live_url)
        sale = page.locator(".feed__item", has_text=CUSTOMER_EMAIL)
        expect(sale).to_be_visible(timeout=20_000)
        expect(sale).to_contain_text("#1, #2")
        expect(page.locator(".stat--accent .stat__value")).to_have_text("$190.00")
        expect(page.locator("[data-live-status]")).to_contain_text("Updated")
        _shoot(page, "live")

        # --- ship it
        sale.locator("a").click()
        expect(
            page.get_by_role("heading", name=re.compile("Valley Rye, Batch No. 1"))
        ).to_be_visible()
        expect(page.locator(".address")).to_contain_text("1 Orchard Lane")
        page.get_by_label("Carrier").fill("UPS")
        page.get_by_label("Tracking number").fill("1Z999AA10123456784")
        page.get_by_role("button", name="Mark shipped").click()
        expect(page.get_by_text("Marked shipped.")).to_be_visible()
        expect(page.locator(".console-head .pill")).to_have_text("Shipped")
        _shoot(page, "order")

        # --- one of the two bottles arrived broken: refund it alone
        order_url = page.url
        certificate_of_two = page.locator(".serial-list a", has_text="No. 2").get_attribute("href")
        page.get_by_role("link", name="Refund this unit…").nth(1).click()
        expect(page.get_by_label("Some units")).to_be_checked()
        expect(page.get_by_label("No. 2")).to_be_checked()
        page.get_by_label("Why (the customer sees this)").fill("No. 2 arrived broken.")
        page.get_by_label(re.compile("Refund this to the customer's card")).check()
        _shoot(page, "refund-units")
        page.get_by_role("button", name="Refund", exact=True).click()
        expect(page).to_have_url(order_url)
        expect(page.get_by_text(re.compile(r"Refunded \$95\.00 for No\. 2"))).to_be_visible()
        expect(page.locator(".serial-list li", has_text="No. 2")).to_contain_text("Refunded")
        _shoot(page, "order-unit-refunded")
        shopper.goto(base + certificate_of_two)
        expect(shopper.get_by_role("heading", level=1)).to_have_text(
            re.compile(r"No\. 2 of \d+ was refunded")
        )
        _shoot(shopper, "certificate-retired")

        page.get_by_role("link", name="Orders", exact=True).first.click()
        expect(page.locator(".orders-table")).to_contain_text(CUSTOMER_EMAIL)
        _shoot(page, "orders")

        # --- close the drop, after its confirmation step
        page.goto(live_url.removesuffix("/live"))
        page.get_by_role("link", name="Close…").first.click()
        page.get_by_label("Close now").check()
        page.get_by_label("I understand a closed drop can't be reopened.").check()
        _shoot(page, "drop-close-confirm")
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator(".console-head .badge")).to_have_text("Closed")
        history = page.locator(".timeline")
        for action in ("Closed the drop", "Marked an order shipped", "Opened the drop"):
            expect(history).to_contain_text(action)
        _shoot(page, "drop-closed")

        for path, name in (
            ("/maker/", "dashboard"),
            ("/maker/products", "products"),
            ("/maker/drops", "drops"),
            ("/maker/settings", "settings"),
        ):
            page.goto(base + path)
            _shoot(page, name)

        shopper.goto(f"{base}/products/valley-rye/batches/1")
        expect(shopper.locator(".buy")).to_contain_text("closed")

        # --- and the demo maker's console, full of history, for the record
        demo_page = demo_context.new_page()
        demo_page.goto(f"{base}/account/login")
        demo_page.get_by_label("Email").fill(demo.MAKER_EMAIL)
        demo_page.get_by_label("Password").fill(demo.MAKER_PASSWORD)
        demo_page.get_by_role("button", name="Log in").click()
        expect(demo_page.get_by_role("heading", name="Hello, Ada")).to_be_visible()
        _shoot(demo_page, "demo-dashboard")
        demo_page.get_by_role("link", name="Sales").last.click()  # the sold-out past drop
        expect(demo_page.locator(".stat__label", has_text="Sold out in")).to_be_visible()
        _shoot(demo_page, "demo-sold-out")
        assert problems == []
    finally:
        demo_context.close()
        customer_context.close()
        maker_context.close()

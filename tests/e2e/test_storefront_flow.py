"""A customer in Chromium: the demo shop's home page, and a whole purchase from sign-up to the
certificate of a numbered bottle, paid on the emulator's hosted checkout page.

Screenshots of every storefront page, at 1280 and 390 px wide, go to artifacts/screenshots/.
"""

from __future__ import annotations

import re
from datetime import date

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from shop import clock, demo, inventory
from shop.extensions import db
from shop.models import Batch, Product, User
from tests.e2e.conftest import SCREENSHOTS, pay_on_the_hosted_page

pytestmark = pytest.mark.e2e


def _rye_seven() -> Batch:
    return db.session.scalar(
        select(Batch).join(Product).where(Product.slug == "highland-rye", Batch.number == 7)
    )


def test_the_demo_shop_home_page_shows_the_live_drop_and_its_numbers_move(
    demo_shop, browser_page, shoot
):
    page = browser_page
    page.goto(f"{demo_shop.url}/")

    live = page.locator(".feature", has_text="The Winter Release")
    expect(page.get_by_role("heading", name="Live now")).to_be_visible()
    expect(live).to_contain_text("Highland Rye")
    expect(live).to_contain_text("240 of 240 left")
    expect(live.locator("[data-countdown]")).to_contain_text(re.compile(r"Closes in \d"))
    spring = page.locator(".drop-card--upcoming", has_text="The Spring Release")
    expect(spring).to_be_visible()
    expect(spring.locator("[data-countdown]")).to_contain_text("Opens in")
    rye_six = page.locator(".drop-card--closed", has_text="Highland Rye, Batch No. 6")
    expect(rye_six).to_contain_text(re.compile(r"Sold out\s+in 4 min"))
    shoot(page, "home")

    # Someone else holds two bottles: the number changes without a reload.
    def someone_buys():
        buyer = db.session.scalar(select(User).where(User.email.like("collector1@%")))
        inventory.hold(
            _rye_seven().id,
            2,
            customer=buyer,
            now=clock.now(),
            birth_date=date(1984, 5, 1),
            ship_country="US",
        )

    demo_shop.run(someone_buys)
    rye = live.locator(".batch-line", has_text="Highland Rye")
    expect(rye.locator("[data-left-for]")).to_have_text("238 of 240 left", timeout=12_000)
    assert page.problems.seen == []


def test_a_new_customer_buys_two_numbered_bottles_and_opens_a_certificate(
    demo_shop, browser_page, shoot
):
    page = browser_page
    base = demo_shop.url

    # --- an anonymous visitor opens the live drop and is asked to log in to buy
    page.goto(f"{base}/drops/winter-release")
    rye = page.locator(".batch-card", has_text="Highland Rye")
    expect(rye).to_contain_text("240 of 240 left")
    rye.get_by_role("link", name="Log in to buy").click()
    expect(page).to_have_url(re.compile(r"/account/login\?next="))

    # --- … signs up instead, and comes straight back to the batch
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Your name").fill("Robin Oakes")
    page.get_by_label("Email").fill("robin.oakes@example.com")
    page.get_by_label("Password").fill("a long enough secret")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/drops/winter-release#buy-\d+$"))
    expect(page.get_by_text("Welcome to Small Batch")).to_be_visible()

    # --- the page's live numbers are asked for without the session: they are everyone's
    with page.expect_request(re.compile(r"/api/drops/[^/]+/stock$"), timeout=12_000) as poll:
        pass
    assert "cookie" not in poll.value.all_headers()
    assert any(c["name"] == "smallbatch_session" for c in page.context.cookies())

    # --- reads the origin story of Batch No. 7
    rye.get_by_role("link", name=re.compile("origin story of Batch No. 7")).click()
    expect(page.get_by_role("heading", name="Batch No. 7", exact=True)).to_be_visible()
    expect(page.locator(".provenance")).to_contain_text("Kessler Farm")
    expect(page.locator(".history")).to_contain_text(re.compile(r"Batch No. 6\s+— 48 bottles"))
    shoot(page, "batch")

    # --- the rye is for buyers of 21 and over, shipped to four countries only
    rye_seven_id = demo_shop.run(lambda: _rye_seven().id)
    page.go_back()
    rye = page.locator(".batch-card", has_text="Highland Rye")
    expect(rye.locator(".facts")).to_contain_text("21+")
    expect(rye.locator(".facts")).to_contain_text(
        "Germany, France, United Kingdom, United States only"
    )
    too_young = date.today().replace(year=date.today().year - 20).isoformat()
    rye.get_by_label("Date of birth").fill(too_young)
    rye.get_by_label("Ships to").select_option("US")
    rye.get_by_role("button", name=re.compile(r"^Buy")).click()
    rye = page.locator(".batch-card", has_text="Highland Rye")
    expect(rye.get_by_text("only sold to buyers aged 21 or over")).to_be_visible()
    expect(rye.get_by_label("Date of birth")).to_have_value(too_young)
    expect(rye).to_contain_text("240 of 240 left")  # nothing was held
    shoot(page, "drop-age-refused")
    assert page.problems.seen == [f"403: POST {base}/checkout/batches/{rye_seven_id}"]
    page.problems.seen.clear()  # that refusal was the point

    # --- buys two from the drop page
    rye.get_by_label("Date of birth").fill("1990-04-30")
    rye.get_by_label("Ships to").select_option("US")
    rye.get_by_label("Quantity").select_option("2")
    expect(rye).to_contain_text("Held for 10 minutes while you pay")
    shoot(page, "drop")
    rye.get_by_role("button", name=re.compile(r"^Buy")).click()

    # --- pays on the emulator's hosted checkout page
    expect(page).to_have_url(re.compile(r"/checkout/cs_test_"))
    assert page.url.startswith(demo_shop.emulator.url)
    pay_on_the_hosted_page(page, "Robin Oakes", "12 Mill Road")

    # --- back in the shop: paid, numbered
    expect(page).to_have_url(re.compile(rf"^{re.escape(base)}/checkout/success"))
    expect(page.locator("main")).to_contain_text("No. 1")
    expect(page.locator("main")).to_contain_text("No. 2")
    shoot(page, "checkout-return")

    # --- My orders says which bottles are theirs
    page.get_by_role("link", name="My orders").click()
    order = page.locator(".order-row", has_text="Highland Rye, Batch No. 7")
    expect(order).to_contain_text("Paid")
    expect(order.locator(".unit-numbers")).to_have_text(re.compile(r"^No\. 1 and No\. 2 of 240$"))
    shoot(page, "my-orders")

    # --- and each has a certificate anyone can check, with no personal data but a first name
    order.get_by_role("link", name="No. 1", exact=True).click()
    expect(page).to_have_url(re.compile(r"/u/[A-Za-z0-9_-]+$"))
    expect(page.locator(".certificate__number")).to_have_text(re.compile(r"No\. 1\s+of 240"))
    certificate = page.locator(".certificate")
    expect(certificate).to_contain_text("Highland Rye")
    expect(certificate).to_contain_text("Robin")
    expect(certificate.locator("svg.qr")).to_be_visible()
    expect(certificate).to_contain_text(f"{base}/u/")
    assert "Oakes" not in certificate.inner_text()
    assert "robin.oakes@example.com" not in page.content()
    shoot(page, "certificate")

    # --- printed, it is one 6 x 4 in label
    label = page.pdf(prefer_css_page_size=True, print_background=True)
    (SCREENSHOTS / "storefront-certificate-label.pdf").write_bytes(label)
    assert len(re.findall(rb"/Type\s*/Page[^s]", label)) == 1

    page.goto(f"{base}/drops/winter-release")
    expect(page.locator(".batch-card", has_text="Highland Rye")).to_contain_text("238 of 240 left")
    expect(page.locator(".batch-card", has_text="Highland Rye")).to_contain_text(
        "the most this batch allows per customer"
    )
    assert page.problems.seen == []


def test_when_stripe_is_down_the_customer_keeps_the_units_and_pays_from_their_order(
    demo_shop, browser_page, shoot
):
    """Buy holds the units first; only then is Stripe asked. When it cannot answer, the customer
    lands on their order — the units still held, the reason, a button — and pays from there."""
    page = browser_page
    base = demo_shop.url
    page.goto(f"{base}/account/login")
    page.get_by_label("Email").fill(demo.CUSTOMER_EMAIL)
    page.get_by_label("Password").fill(demo.CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="My orders")).to_be_visible()

    demo_shop.emulator.faults(fail_next=3, fail_status=500, paths=["/v1/checkout/sessions"])
    page.goto(f"{base}/drops/winter-release")
    rye = page.locator(".batch-card", has_text="Highland Rye")
    rye.get_by_label("Date of birth").fill("1990-04-30")
    rye.get_by_label("Ships to").select_option("GB")
    rye.get_by_role("button", name=re.compile(r"^Buy")).click()

    expect(page).to_have_url(re.compile(r"/checkout/orders/[A-Za-z0-9_-]+/pay$"))
    expect(page.get_by_role("alert")).to_contain_text("still held")
    expect(page.locator(".order-status--held")).to_contain_text("held for you")
    expect(page.locator("h1")).to_have_text("Batch No. 7")
    shoot(page, "payment-unavailable")
    page.goto(f"{base}/drops/winter-release")
    expect(page.locator(".batch-card", has_text="Highland Rye")).to_contain_text("239 of 240 left")

    page.goto(f"{base}/account/orders")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page).to_have_url(re.compile(r"/checkout/cs_test_"))
    assert page.url.startswith(demo_shop.emulator.url)

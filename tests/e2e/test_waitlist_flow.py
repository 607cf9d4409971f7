"""A customer in Chromium joins the waitlist of a sold-out batch, gets an offer when a hold runs
out, opens it from the email and pays on the emulator's hosted page.

Screenshots at 1280 and 390 px go to artifacts/screenshots/storefront-waitlist-*.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from shop import clock, demo, inventory, waitlist
from shop.extensions import db
from shop.models import Batch, Message, Order, Product, WaitlistPlace
from shop.models.order import EXPIRED
from shop.models.waitlist import BOUGHT
from testkit.factories import make_customer
from tests.e2e.conftest import pay_on_the_hosted_page

pytestmark = pytest.mark.e2e


def _brandy_three() -> Batch:
    return db.session.scalar(
        select(Batch).join(Product).where(Product.slug == "orchard-apple-brandy", Batch.number == 3)
    )


def test_a_customer_joins_a_waitlist_gets_an_offer_and_pays(demo_shop, browser_page, shoot):
    page = browser_page
    base = demo_shop.url

    # Brandy No. 3 is down to its last four bottles, all held by two collectors paying now.
    def sell_out() -> list[int]:
        batch = _brandy_three()
        inventory.resize_edition(batch, 4)
        return [
            inventory.hold(batch.id, 2, customer=make_customer(), now=clock.now()).id
            for _ in range(2)
        ]

    holds = demo_shop.run(sell_out)

    page.goto(f"{base}/account/login")
    page.get_by_label("Email").fill(demo.CUSTOMER_EMAIL)
    page.get_by_label("Password").fill(demo.CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="My orders")).to_be_visible()

    # --- the batch is all taken: the customer joins its waitlist
    page.goto(f"{base}/drops/winter-release")
    brandy = page.locator(".batch-card", has_text="Orchard Apple Brandy")
    expect(brandy).to_contain_text("All taken")
    expect(brandy).to_contain_text("offered to the waitlist first")
    brandy.locator(".waitlist").scroll_into_view_if_needed()
    shoot(page, "waitlist-join")
    brandy.get_by_role("button", name="Join the waitlist").click()
    expect(page).to_have_url(re.compile(r"/drops/winter-release#buy-\d+$"))
    expect(page.get_by_text("You're No. 1 in line")).to_be_visible()
    brandy = page.locator(".batch-card", has_text="Orchard Apple Brandy")
    expect(brandy.locator(".waitlist__number")).to_have_text("No. 1")
    expect(brandy.get_by_role("button", name="Leave the waitlist")).to_be_visible()
    shoot(page, "waitlist-in-line")

    # --- a collector's hold runs out: its bottles go to the line, and the worker offers one
    def hold_runs_out() -> str:
        inventory.release(db.session.get(Order, holds[0]), EXPIRED, now=clock.now())
        db.session.commit()
        assert waitlist.offer_freed(clock.now()).offered == 1
        message = db.session.scalar(select(Message).where(Message.kind == "waitlist_offer"))
        assert message.recipient == demo.CUSTOMER_EMAIL
        return re.search(r"http\S+/waitlist/offers/\S+", message.text_body).group(0)

    offer_link = demo_shop.run(hold_runs_out)
    assert offer_link.startswith(base)

    # --- the email's link: the bottle held for them, until when, and a way to pay
    page.goto(offer_link)
    expect(page.get_by_role("heading", name="Held for you")).to_be_visible()
    expect(page.locator("main")).to_contain_text("1 bottle of Orchard Apple Brandy, Batch No. 3")
    expect(page.locator(".countdown")).to_contain_text(re.compile(r"Time left: \d"))
    shoot(page, "waitlist-offer")
    page.get_by_role("button", name=re.compile(r"^Pay \$72\.00")).click()

    # --- Stripe's hosted page, the same Checkout as any hold
    expect(page).to_have_url(re.compile(r"/checkout/cs_test_"))
    pay_on_the_hosted_page(page, "Sam Rivera", "4 Orchard Lane")

    expect(page).to_have_url(re.compile(rf"^{re.escape(base)}/checkout/success"))
    expect(page.locator("main")).to_contain_text("No. 1")
    shoot(page, "waitlist-paid")

    # --- the place is settled as bought; someone else's link to it is a 404 (tested elsewhere)
    def place_state() -> str:
        waitlist.offer_freed(clock.now())
        db.session.commit()
        return db.session.scalar(select(WaitlistPlace.state))

    assert demo_shop.run(place_state) == BOUGHT
    page.goto(offer_link)
    expect(page.get_by_role("heading", name="They're yours")).to_be_visible()
    assert page.problems.seen == []

"""A person in Chromium confirms their email and resets a forgotten password through the
development mailbox (/dev/mailbox), the way the demo's email is read. The worker's pass is run
between steps, as the development server's worker thread would.

Screenshots of the mailbox and of each message (its HTML as a mail client shows it) at 1280 and
390 px go to artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

import config as settings
from shop import clock, create_app, demo, worker
from shop.extensions import db
from testkit import databases
from tests.e2e.conftest import DemoShop, serving_the_demo
from tests.support.stripe import stripe_settings

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def dev_shop(tmp_path, emulator) -> Iterator[DemoShop]:
    """The demo shop under SHOP_ENV=development (so /dev/mailbox exists), no SMTP_URL."""
    config = settings.DevelopmentConfig()
    config.SQLALCHEMY_DATABASE_URI = databases.migrated_sqlite_database(tmp_path)
    config.SHOP_UPLOAD_DIR = str(tmp_path / "uploads")
    config.SHOP_MAILBOX_DIR = str(tmp_path / "mailbox")
    config.SHOP_BASE_URL = "http://127.0.0.1"
    config.SMTP_URL = None
    config.RATELIMIT_ENABLED = False
    for name, value in stripe_settings(emulator).items():
        setattr(config, name, value)
    with serving_the_demo(create_app(config), emulator, webhooks=False) as shop:
        yield shop


def _work(shop: DemoShop) -> None:
    """One pass of the worker: the outbox delivers to the mailbox."""
    report = shop.run(lambda: worker.run_pass(clock.now(), jobs=("outbox",)))
    assert report.ok, report.problems


def _open_newest(page, shop: DemoShop, subject: str, shoot, name: str) -> None:
    """From the mailbox, open the newest message with ``subject``, and its HTML part."""
    page.goto(f"{shop.url}/dev/mailbox")
    expect(page.get_by_role("heading", name="Mailbox")).to_be_visible()
    shoot(page, f"mailbox-{name}")
    page.get_by_role("link", name=subject).first.click()
    expect(page.get_by_role("heading", name=subject)).to_be_visible()
    shoot(page, f"mailbox-{name}-message")
    page.get_by_role("link", name="Open the HTML version").click()
    shoot(page, f"mail-{name}")


def test_a_new_customer_confirms_their_email_from_the_dev_mailbox(dev_shop, browser_page, shoot):
    page = browser_page
    page.goto(f"{dev_shop.url}/account/register")
    page.get_by_label("Your name").fill("Robin Oakes")
    page.get_by_label("Email").fill("robin.oakes@example.com")
    page.get_by_label("Password").fill("a long enough secret")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("We sent a link to robin.oakes@example.com")).to_be_visible()

    page.goto(f"{dev_shop.url}/account/")
    expect(page.get_by_text("Please confirm your email address.")).to_be_visible()
    shoot(page, "account-unconfirmed")

    _work(dev_shop)
    _open_newest(page, dev_shop, "Confirm your email address", shoot, "verify")
    expect(page.get_by_text("Hello Robin")).to_be_visible()
    page.get_by_role("link", name="Confirm my email").click()

    expect(page).to_have_url(re.compile(r"/account/$"))
    expect(page.get_by_text("your email address is confirmed")).to_be_visible()
    expect(page.get_by_text("Please confirm your email address.")).to_have_count(0)

    # One click on an upcoming drop: told when it opens.
    page.goto(f"{dev_shop.url}/drops/spring-release")
    shoot(page, "drop-upcoming-notify")
    page.locator("#notify").get_by_role("button", name="Notify me").click()
    expect(page.get_by_text("You're on the list.")).to_be_visible()
    assert page.problems.seen == []


def test_a_customer_resets_a_forgotten_password_through_the_dev_mailbox(
    dev_shop, browser_page, shoot
):
    page = browser_page
    email = demo.CUSTOMER_EMAIL
    page.goto(f"{dev_shop.url}/account/login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    shoot(page, "forgot-password")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    shoot(page, "forgot-password-sent")

    _work(dev_shop)
    _open_newest(page, dev_shop, "Reset your Small Batch password", shoot, "reset")
    reset_link = page.get_by_role("link", name="Choose a new password").get_attribute("href")
    page.get_by_role("link", name="Choose a new password").click()

    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    shoot(page, "reset-password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password, again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set new password").click()
    expect(page.get_by_text("Your new password is set")).to_be_visible()

    # The link works once.
    page.goto(reset_link)
    expect(page.get_by_text("already used")).to_be_visible()
    shoot(page, "reset-link-used")

    # The new password logs in; the old one does not.
    page.get_by_role("button", name="Log out").click()
    page.goto(f"{dev_shop.url}/account/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(demo.CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Wrong email or password.")).to_be_visible()
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    assert [p for p in page.problems.seen if "401" not in p and "400" not in p] == []


def _write_every_other_kind() -> None:
    """A receipt, shipping and refund notice for a demo order; a drop notice and its opt-in."""
    from sqlalchemy import select

    from shop import messages
    from shop.models import Drop, DropSubscription, Order
    from shop.models.order import PAID

    order = db.session.scalars(select(Order).where(Order.state == PAID)).first()
    order.shipping = {
        "name": "Sam Rivera",
        "address": {
            "line1": "12 Mill Road",
            "city": "Hudson",
            "postal_code": "12534",
            "country": "US",
        },
    }
    order.carrier, order.tracking_number = "UPS", "1Z999AA10123456784"
    order.refund_reason = "A cracked bottle."
    messages.order_paid(order)
    messages.order_shipped(order)
    messages.order_refunded(order)
    drop = db.session.scalar(select(Drop).where(Drop.slug == "spring-release"))
    subscription = DropSubscription(drop_id=drop.id, email="fan@example.com")
    db.session.add(subscription)
    db.session.flush()
    messages.confirm_subscription(subscription, drop)
    messages.drop_live(drop, subscription, dedupe_key="demo", available_at=clock.now())


@pytest.mark.parametrize(
    ("subject", "name", "says"),
    [
        (re.compile("^Your order:"), "receipt", re.compile(r"No\. \d+ of \d+")),
        (re.compile("^On its way:"), "shipped", re.compile("Track your parcel")),
        (re.compile("^Refunded:"), "refunded", re.compile("never sold to anyone else")),
        (re.compile("^Confirm: tell me when"), "notify-confirm", re.compile("tell me when")),
        (re.compile(" is live$"), "drop-live", re.compile("Stop these emails")),
    ],
)
def test_every_kind_of_message_reads_well_in_the_mailbox(
    dev_shop, browser_page, shoot, subject, name, says
):
    page = browser_page
    dev_shop.run(_write_every_other_kind)
    _work(dev_shop)

    _open_newest(page, dev_shop, subject, shoot, name)

    expect(page.get_by_text(says).first).to_be_visible()
    assert page.problems.seen == []

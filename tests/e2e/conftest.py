"""End-to-end harness: the real shop on a real socket, the Stripe emulator sending it webhooks,
and Debian's Chromium driven through Playwright.

- ``demo_shop``: a fresh SQLite file, migrated with the real migrations, the demo data loaded
  (``shop.demo``), served by werkzeug's threaded server in this process; the emulator (the
  ``emulator`` fixture from ``tests.support.stripe``) is its Stripe and sends webhooks to it.
- ``serving_the_demo(app, emulator, webhooks=…)``: the same for an app configured elsewhere
  (``test_mail_flow``'s development shop).
- ``pay_on_the_hosted_page(page, name, line1)``: fills the emulator's checkout page and pays.
- ``chromium``: a Playwright Chromium browser (``/usr/bin/chromium``). Missing Chromium skips
  locally with the reason and fails under CI.
- ``browser_page``: a new page at 1280 x 900 that records script errors and CSP violations.
- ``shoot``: ``shoot(page, "drop")`` saves ``artifacts/screenshots/storefront-drop-1280.png``
  and ``…-390.png``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask

from shop import clock, demo
from shop.extensions import db
from testkit import databases, servers
from testkit.databases import require
from tests.support.stripe import CARD_OK, Emulator, stripe_settings

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTHS = (1280, 390)


def chromium_missing_reason() -> str | None:
    if shutil.which(CHROMIUM) is None:
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed in .venv"
    return None


def require_chromium() -> None:
    """Skip locally, fail under CI, when the browser cannot run."""
    require("Chromium for the e2e tests", chromium_missing_reason())


@dataclass
class DemoShop:
    url: str
    app: Flask
    emulator: Emulator

    def run(self, work: Callable[[], object]) -> object:
        """Run ``work`` against the shop's database (arrange a state mid-test), committed."""
        with self.app.app_context():
            try:
                result = work()
                db.session.commit()
                return result
            finally:
                db.session.remove()


@pytest.fixture
def demo_shop(tmp_path, emulator: Emulator) -> Iterator[DemoShop]:
    database_url = databases.migrated_sqlite_database(tmp_path)
    app = databases.make_app(
        database_url,
        SHOP_UPLOAD_DIR=str(tmp_path / "uploads"),
        SHOP_BASE_URL="http://127.0.0.1",
        **stripe_settings(emulator),
    )
    with serving_the_demo(app, emulator, webhooks=True) as shop:
        yield shop


@contextmanager
def serving_the_demo(app: Flask, emulator: Emulator, *, webhooks: bool) -> Iterator[DemoShop]:
    """``app`` with the demo loaded, on a threaded server in this process until the block ends;
    with ``webhooks`` the emulator delivers its events to it."""
    with app.app_context():
        demo.load(now=clock.now())
        db.session.commit()
        db.session.remove()
    server = servers.start_threaded_server(app)
    # Success/cancel URLs, certificate and email links point at this server, never at a Host.
    app.config["SHOP_BASE_URL"] = server.url
    if webhooks:
        emulator.webhooks(url=f"{server.url}/stripe/webhook")
    try:
        yield DemoShop(server.url, app, emulator)
    finally:
        server.stop()
        with app.app_context():
            db.engine.dispose()


def pay_on_the_hosted_page(page, name: str, line1: str, *, state: str | None = None) -> None:
    """Fill the emulator's checkout page (an address in Hudson, US; the test card that pays)
    and press Pay."""
    page.locator("#name").fill(name)
    page.locator("#country").select_option("US")
    page.locator("#line1").fill(line1)
    page.locator("#postal_code").fill("12534")
    page.locator("#city").fill("Hudson")
    if state is not None:
        page.locator("#state").fill(state)
    page.locator("#card_number").fill(CARD_OK)
    page.locator("#expiry").fill("12 / 34")
    page.locator("#cvc").fill("123")
    page.get_by_role("button", name=re.compile(r"^Pay")).click()


@pytest.fixture
def chromium() -> Iterator:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Problems:
    """Script errors, console errors (CSP violations land here) and failed loads of a page."""

    seen: list[str] = field(default_factory=list)

    def watch(self, page) -> None:
        page.on("pageerror", lambda error: self.seen.append(f"pageerror: {error}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, message) -> None:
        # Failed loads are reported with their URL by _response.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.seen.append(f"console: {message.text}")

    def _response(self, response) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.seen.append(f"{response.status}: {response.request.method} {response.url}")


@pytest.fixture
def browser_page(chromium) -> Iterator:
    """A fresh browser context and page; the test may assert ``page.problems.seen == []``."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems = Problems()
    problems.watch(page)
    page.problems = problems
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def shoot() -> Callable:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> None:
        """The page as it is now, full length, at each width; the page is left at 1280 px."""
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(150)  # let the layout settle after the resize
            page.screenshot(
                path=str(SCREENSHOTS / f"storefront-{name}-{width}.png"), full_page=True
            )
        page.set_viewport_size({"width": WIDTHS[0], "height": 900})

    return take

"""Every page a visitor, a customer or a maker can reach, checked as a whole in Chromium.

The demo shop is seeded with what breaks layouts (an 80-letter name without a space, a long
product name and drop title), a sold-out batch, a closed drop that sold nothing, paid units with
certificates and a running hold. Each role's pages are found by following the links a person
can follow; at 390 and 1280 px each page must not scroll sideways, must log no console error,
and axe-core (vendored, run inside the page) must find no serious or critical WCAG 2.2 AA
violation. ``SHOP_AUDIT_SHOTS=1`` also saves a full-page screenshot of each to
``artifacts/screenshots/audit/``.
"""

from __future__ import annotations

import os
import re
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from shop import clock, demo, inventory, passwords
from shop.extensions import db
from shop.models import Batch, Drop, Product, User
from shop.models.drop import CLOSED
from shop.models.user import CUSTOMER
from tests.e2e.conftest import SCREENSHOTS, WIDTHS

pytestmark = pytest.mark.e2e

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
LONG_WORD = "Wolfeschlegelsteinhausenbergerdorffvoralternwarengewissenhaftschaferswessenschafe"
LONG_EMAIL = f"{LONG_WORD.lower()[:60]}@example.com"
PASSWORD = "a long enough secret"
MAX_PAGES = 45
SAME_SHAPE = 2  # pages whose paths differ only in ids or numbers: the first two are enough
SKIP = re.compile(r"^/(static|media|api|stripe)/|\.(svg|csv|json|png|jpg|pdf|pem)$|/logout$")


def seed_the_awkward_cases(now) -> str:
    """Long names and words, a closed drop that sold nothing, paid units and a running hold
    (its public id is returned)."""
    maker = db.session.scalar(select(User).where(User.email == demo.MAKER_EMAIL))
    long_customer = User(
        email=LONG_EMAIL,
        password_hash=passwords.hash_password(PASSWORD),
        display_name=LONG_WORD[:80],
        role=CUSTOMER,
    )
    db.session.add(long_customer)
    product = Product(
        maker_id=maker.id,
        name=f"Barrel-{LONG_WORD}",
        slug="long-word-barrel",
        description=f"A {LONG_WORD} of a description.",
    )
    quiet = Drop(
        maker_id=maker.id,
        title=f"The {LONG_WORD} Release",
        slug="quiet-release",
        story=f"Nobody came for the {LONG_WORD}.",
        state=CLOSED,
        opens_at=now - timedelta(days=20),
        closes_at=now - timedelta(days=19),
        closed_at=now - timedelta(days=19),
    )
    db.session.add_all([product, quiet])
    db.session.flush()
    db.session.add(
        Batch(
            product_id=product.id,
            drop_id=quiet.id,
            number=1,
            edition_size=120,
            unit_label="bottles",
            unit_singular="bottle",
            price=12000,
            currency="usd",
            per_customer_limit=2,
            story=f"## {LONG_WORD}\n\nhttps://example.com/{LONG_WORD}/{LONG_WORD}",
            summary=f"{LONG_WORD}.",
            origin_place=LONG_WORD,
        )
    )
    rye, brandy = (
        db.session.scalar(
            select(Batch).join(Product).where(Product.slug == slug, Batch.number == number)
        )
        for slug, number in (("highland-rye", 7), ("orchard-apple-brandy", 3))
    )
    paid = inventory.hold(
        rye.id, 2, customer=long_customer, now=now, birth_date=date(1980, 1, 1), ship_country="DE"
    )
    inventory.confirm(paid, now=now, customer_email=long_customer.email)
    return inventory.hold(brandy.id, 1, customer=long_customer, now=now).public_id


def log_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/account/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_attached()


def shape(path: str) -> str:
    """/maker/orders/AbC12x → /maker/orders/*: pages of one kind share a shape."""
    return "/".join("*" if re.search(r"\d", part) else part for part in path.split("/"))


def visit_reachable_pages(page: Page, base: str, starts: list[str], visit) -> list[str]:
    """Open the pages a person can reach from ``starts`` by following links, one or two of each
    kind, calling ``visit(path)`` on each; the paths opened."""
    host = urlsplit(base).netloc
    seen_paths: set[str] = set()
    per_shape: dict[str, int] = {}
    queue = list(starts)
    found: list[str] = []
    while queue and len(found) < MAX_PAGES:
        path = queue.pop(0)
        if path in seen_paths or per_shape.get(shape(path), 0) >= SAME_SHAPE:
            continue
        seen_paths.add(path)
        per_shape[shape(path)] = per_shape.get(shape(path), 0) + 1
        response = page.goto(base + path)
        if response is None or (not response.ok and path not in starts):
            page.problems.seen.clear()  # e.g. a link to a certificate whose unit was refunded
            continue
        found.append(path)
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            parts = urlsplit(urljoin(base + path, href))
            if parts.netloc == host and not SKIP.search(parts.path):
                queue.append(parts.path)
        visit(path)
    return found


def problems_of(page: Page, axe_source: str, role: str = "page") -> list[str]:
    """Sideways scrolling at each width, then axe-core's serious and critical findings."""
    found = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(50)
        wide = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        if wide[0] > wide[1]:
            culprits = page.evaluate(
                """(limit) => [...document.querySelectorAll('body *')]
                    .filter(e => e.getBoundingClientRect().right > limit + 1)
                    .slice(0, 3).map(e => e.tagName.toLowerCase() + '.' + e.className)""",
                wide[1],
            )
            found.append(f"{width}px: {wide[0]} px wide ({', '.join(culprits)})")
        if os.environ.get("SHOP_AUDIT_SHOTS"):
            name = re.sub(r"[^a-z0-9]+", "-", urlsplit(page.url).path.lower()).strip("-")
            (SCREENSHOTS / "audit").mkdir(parents=True, exist_ok=True)
            page.screenshot(
                path=str(SCREENSHOTS / "audit" / f"{role}-{name or 'home'}-{width}.png"),
                full_page=True,
            )
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.evaluate(axe_source)  # through the debugger, so the page's CSP stays as it is
        violations = page.evaluate(
            """(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})
                .then(r => r.violations
                    .filter(v => v.impact === 'serious' || v.impact === 'critical')
                    .map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' '))
                        .join(' | ')))""",
            AXE_TAGS,
        )
        found.extend(f"{width}px axe {v}" for v in violations)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})
    return found


@pytest.mark.parametrize(
    ("role", "starts"),
    [
        ("visitor", ["/", "/account/login", "/account/register", "/u/no-such-code", "/nowhere"]),
        ("customer", ["/", "/account/", "/account/password", "/checkout/orders/{held}/cancel"]),
        ("maker", ["/maker/", "/maker/drops", "/maker/products", "/maker/orders"]),
    ],
)
def test_every_reachable_page_fits_the_screen_logs_no_error_and_passes_axe(
    demo_shop, browser_page, role, starts
):
    held = demo_shop.run(lambda: seed_the_awkward_cases(clock.now()))
    starts = [start.format(held=held) for start in starts]
    page = browser_page
    base = demo_shop.url
    if role == "customer":
        log_in(page, base, LONG_EMAIL, PASSWORD)
    elif role == "maker":
        log_in(page, base, demo.MAKER_EMAIL, demo.MAKER_PASSWORD)
    axe_source = AXE.read_text(encoding="utf-8")
    report = {}

    def audit(path: str) -> None:
        found = problems_of(page, axe_source, role)
        found += [p for p in page.problems.seen if not p.startswith(f"404: GET {base}{path}")]
        page.problems.seen.clear()
        if found:
            report[path] = found

    page.problems.seen.clear()
    pages = visit_reachable_pages(page, base, starts, audit)

    assert len(pages) >= len(starts), pages

    assert report == {}, "\n".join(f"{path}: {found}" for path, found in report.items())

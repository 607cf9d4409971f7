"""What a customer reads: closed drops, totals before Stripe, order pages, summaries, unknown
certificates, registration errors and times that the browser can show in its own zone."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shop import clock, inventory
from shop.extensions import db
from shop.models import Batch
from shop.templating import iso
from testkit.factories import make_batch, make_customer, make_drop
from tests.support.clients import log_in

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def text_of(html: str) -> str:
    """The page as a reader sees it: tags dropped, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def live_batch(**kwargs) -> Batch:
    now = clock.now()
    drop = make_drop(opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=1))
    return make_batch(drop=drop, **kwargs)


def closed_batch(*, sold: int, edition_size: int = 120) -> Batch:
    now = clock.now()
    opened = now - timedelta(days=3)
    drop = make_drop(opens_at=opened, closes_at=now - timedelta(days=2))
    batch = make_batch(drop=drop, edition_size=edition_size, limit=max(sold, 1))
    if sold:
        customer = make_customer()
        order = inventory.hold(batch.id, sold, customer=customer, now=opened + timedelta(hours=1))
        inventory.confirm(order, now=opened + timedelta(hours=1), customer_email=customer.email)
    return batch


def test_a_closed_drop_that_sold_nothing_says_so_kindly_not_zero_found_a_home(client):
    batch = closed_batch(sold=0)
    db.session.commit()

    page = text_of(client.get(f"/drops/{batch.drop.slug}").get_data(as_text=True))

    assert "0 of 120" not in page
    assert "The drop closed before any of the 120 units were sold." in page


def test_a_closed_drop_that_sold_some_says_how_many_found_a_home_before_it_closed(client):
    batch = closed_batch(sold=3)
    db.session.commit()

    page = text_of(client.get(f"/drops/{batch.drop.slug}").get_data(as_text=True))

    assert "3 of 120 units found a home before the drop closed." in page


def test_each_quantity_choice_shows_its_total_before_the_customer_leaves_for_stripe(client):
    batch = live_batch(price=9500, limit=3)
    customer = make_customer()
    db.session.commit()
    log_in(client, customer)

    html = client.get(f"/drops/{batch.drop.slug}").get_data(as_text=True)

    assert '<option value="2" data-total="$190.00">2 — $190.00</option>' in html
    assert '<option value="3" data-total="$285.00">3 — $285.00</option>' in html
    assert "Buy — <span data-total>$95.00</span>" in html


def test_an_order_page_lists_its_unit_numbers_once(client):
    customer = make_customer()
    batch = live_batch(edition_size=240, number=7)
    order = inventory.hold(batch.id, 2, customer=customer, now=clock.now())
    inventory.confirm(order, now=clock.now(), customer_email=customer.email)
    db.session.commit()
    log_in(client, customer)

    html = client.get(f"/account/orders/{order.public_id}").get_data(as_text=True)

    for unit in order.units:
        assert html.count(f'href="/u/{unit.certificate_code}"') == 1


def test_a_batch_page_does_not_repeat_the_storys_opening_as_its_summary(client):
    batch = live_batch()
    batch.story = "Grown **high** up the valley, cut by hand.\n\nThen distilled twice."
    batch.summary = "Grown high up the valley, cut by hand."
    db.session.commit()

    html = client.get(f"/products/{batch.product.slug}/batches/{batch.number}").get_data(
        as_text=True
    )

    assert text_of(html).count("Grown high up the valley") == 1


def test_a_batch_page_shows_a_summary_of_its_own(client):
    batch = live_batch()
    batch.summary = "Five winters in new oak."
    db.session.commit()

    html = client.get(f"/products/{batch.product.slug}/batches/{batch.number}").get_data(
        as_text=True
    )

    assert '<p class="lead">Five winters in new oak.</p>' in html


def test_an_unknown_certificate_code_says_no_certificate_has_it_and_why_that_may_be(client):
    response = client.get("/u/ABCD-1234-not-a-code")
    page = text_of(response.get_data(as_text=True))

    assert response.status_code == 404
    assert "No certificate has this code" in page
    assert "It may be mistyped" in page and "It may not be genuine" in page
    assert "ABCD-1234-not-a-code" in page
    assert "may have moved" not in page


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"display_name": "", "email": "not an address", "password": "short"},
            [
                "Tell us your name",
                "That email address doesn&#39;t look right",
                "Passwords are 8 to",
            ],
        ),
        (
            {"display_name": "x" * 81, "email": "", "password": ""},
            ["Keep your name to 80 characters or fewer.", "Enter your email address", "Choose a"],
        ),
    ],
)
def test_registration_shows_every_error_at_once_in_the_shops_own_words(client, fields, expected):
    page = client.get("/account/register").get_data(as_text=True)
    token = _CSRF.search(page).group(1)

    response = client.post("/account/register", data={**fields, "csrf_token": token})
    html = response.get_data(as_text=True)

    assert response.status_code == 422
    for message in expected:
        # once beside its field and once in the summary at the top
        assert html.count(message) == 2, message
    assert "Field must" not in html and "This field is required" not in html


def test_times_on_customer_pages_are_machine_readable_for_the_visitors_own_zone(client):
    now = clock.now()
    drop = make_drop(opens_at=now + timedelta(days=2), closes_at=None)
    make_batch(drop=drop)
    db.session.commit()

    html = client.get(f"/drops/{drop.slug}").get_data(as_text=True)

    stamp = re.escape(iso(drop.opens_at))
    found = re.search(rf'<time datetime="{stamp}" data-local="datetime">([^<]+)</time>', html)
    assert found, "no <time> for the opening"
    assert found.group(1).endswith(" UTC")  # readable without scripts
    assert "/static/js/site.js" in html

"""The answer to a buy of a batch with nothing left (issue 15): a small 409 page that says what
happens next and never renders the drop, read in one statement; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shop import catalog, clock, inventory, waitlist
from shop.extensions import db
from shop.models import Batch
from shop.models.drop import DRAFT
from testkit.factories import make_batch, make_customer, make_drop, make_product
from tests.support.clients import log_in, unsigned
from tests.support.wire import recorded_statements, statements_sent

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _live_drop(**kwargs):
    now = clock.now()
    return make_drop(opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=1), **kwargs)


def _signed_in(client, customer, slug: str) -> str:
    """Log ``customer`` in and return the CSRF token of the drop page, as a browser would."""
    log_in(client, customer)
    return _CSRF.search(client.get(f"/drops/{slug}").get_data(as_text=True)).group(1)


def _buy(client, batch_id: int, quantity: int, csrf: str, **headers):
    return client.post(
        f"/checkout/batches/{batch_id}",
        data={"quantity": str(quantity), "csrf_token": csrf},
        headers=headers,
    )


def _take_all(batch: Batch, *, paid: bool = False) -> None:
    """Every unit of ``batch`` held (or paid for) by other customers, a limit's worth each."""
    left = batch.edition_size
    while left:
        taking = min(left, batch.per_customer_limit)
        customer = make_customer()
        order = inventory.hold(batch.id, taking, customer=customer, now=clock.now())
        if paid:
            inventory.confirm(order, now=clock.now(), customer_email=customer.email)
        left -= taking
    db.session.commit()


def test_a_buy_of_a_sold_out_batch_gets_a_small_sold_out_page_not_the_drop(app, client):
    drop = _live_drop(title="The Winter Release")
    gone = make_batch(drop=drop, number=7, edition_size=2, limit=2)
    other = make_batch(drop=drop, number=3, edition_size=10)
    _take_all(gone)
    csrf = _signed_in(client, make_customer(), drop.slug)
    db.session.commit()

    response = _buy(client, gone.id, 1, csrf)
    html = response.get_data(as_text=True)

    assert response.status_code == 409
    assert re.search(r"<h1[^>]*>Sold out</h1>", html)
    assert f"{gone.product.name}, <strong>Batch No. 7</strong>" in html
    assert "The Winter Release" in html and "Nothing was held for you" in html
    assert "batch-card" not in html and f"/checkout/batches/{other.id}" not in html
    assert f'href="/drops/{drop.slug}#buy-{gone.id}"' in html  # back to the drop, at the batch
    assert "<title>Sold out: " in html


def test_json_callers_get_the_sold_out_error_as_json(app, client):
    drop = _live_drop()
    gone = make_batch(drop=drop, edition_size=2, limit=2)
    _take_all(gone)
    csrf = _signed_in(client, make_customer(), drop.slug)

    response = _buy(client, gone.id, 1, csrf, Accept="application/json")

    assert response.status_code == 409
    assert response.json == {
        "error": {
            "code": "sold_out",
            "message": "Sold out — every unit of this batch is taken.",
            "remaining": 0,
        }
    }


def test_the_sold_out_page_names_the_batch_that_goes_on_sale_next(app, client):
    drop = _live_drop()
    product = make_product(drop.maker)
    no7 = make_batch(product, drop, number=7, edition_size=2, limit=2)
    no8 = make_batch(product, drop, number=8, edition_size=3, limit=2)
    no8.follows_batch_id = no7.id
    _take_all(no7)
    csrf = _signed_in(client, make_customer(), drop.slug)

    html = _buy(client, no7.id, 1, csrf).get_data(as_text=True)

    assert "Batch No. 8 is next." in html
    assert "It goes on sale when No. 7 sells out, so you can buy it now." in html
    assert f'href="/drops/{drop.slug}#buy-{no8.id}"' in html


def test_the_sold_out_page_says_when_the_next_batch_is_all_taken_too(app, client):
    drop = _live_drop()
    product = make_product(drop.maker)
    no7 = make_batch(product, drop, number=7, edition_size=2, limit=2)
    no8 = make_batch(product, drop, number=8, edition_size=2, limit=2)
    no8.follows_batch_id = no7.id
    _take_all(no7)
    _take_all(no8)
    csrf = _signed_in(client, make_customer(), drop.slug)

    html = _buy(client, no7.id, 1, csrf).get_data(as_text=True)

    assert "went on sale when No. 7 sold out, and it is all taken too" in html
    assert "you can buy it now" not in html


def test_units_only_held_may_come_back_so_the_page_offers_the_waitlist(app, client):
    drop = _live_drop()
    gone = make_batch(drop=drop, edition_size=2, limit=2)
    _take_all(gone)
    customer = make_customer()
    csrf = _signed_in(client, customer, drop.slug)

    html = _buy(client, gone.id, 1, csrf).get_data(as_text=True)

    assert "Held units may come back." in html
    assert "go to the waitlist first, in order" in html
    assert "found a home" not in html
    form = re.search(r'<form[^>]*action="/waitlist/batches/(\d+)/join".*?</form>', html, re.S)
    assert form and int(form.group(1)) == gone.id
    token = _CSRF.search(form.group(0)).group(1)

    joined = client.post(
        f"/waitlist/batches/{gone.id}/join", data={"csrf_token": token, "quantity": "2"}
    )

    assert joined.status_code == 303
    assert joined.headers["Location"].endswith(f"/drops/{drop.slug}#buy-{gone.id}")
    db.session.rollback()
    assert waitlist.active_place(customer, gone.id).quantity == 2


def test_a_customer_already_in_line_is_told_so_not_offered_the_line_again(app, client):
    drop = _live_drop()
    gone = make_batch(drop=drop, edition_size=2, limit=2)
    _take_all(gone)
    customer = make_customer()
    waitlist.join(db.session.get(Batch, gone.id), 1, customer=customer, now=clock.now())
    db.session.commit()
    csrf = _signed_in(client, customer, drop.slug)

    html = _buy(client, gone.id, 1, csrf).get_data(as_text=True)

    assert "You're on the waitlist for this batch." in html
    assert "/join" not in html


def test_a_batch_sold_for_good_says_every_unit_found_a_home(app, client):
    drop = _live_drop()
    gone = make_batch(drop=drop, edition_size=2, limit=2)
    gone.unit_label, gone.unit_singular = "bottles", "bottle"
    _take_all(gone, paid=True)
    csrf = _signed_in(client, make_customer(), drop.slug)

    response = _buy(client, gone.id, 1, csrf)
    html = response.get_data(as_text=True)

    assert response.status_code == 409
    assert "All 2 bottles of this batch have been bought." in html
    assert "Every bottle found a home." in html and "there is no waitlist" in html
    assert "/join" not in html and "is next" not in html


def test_asking_for_more_than_is_left_keeps_the_drop_page_with_the_reason_at_the_batch(app, client):
    drop = _live_drop()
    batch = make_batch(drop=drop, edition_size=3, limit=2)
    other = make_batch(drop=drop, number=2, edition_size=10)
    inventory.hold(batch.id, 2, customer=make_customer(), now=clock.now())
    db.session.commit()
    csrf = _signed_in(client, make_customer(), drop.slug)

    response = _buy(client, batch.id, 2, csrf)
    html = response.get_data(as_text=True)

    assert response.status_code == 409
    assert re.search(rf'id="buy-error-{batch.id}">Only 1 left — choose a smaller quantity\.', html)
    assert f'id="batch-{other.id}-title"' in html  # the whole drop, to choose again
    assert "What happens next" not in html


def test_sold_out_facts_are_none_for_an_unknown_or_unreleased_batch(app):
    draft = make_batch(drop=make_drop(state=DRAFT))
    unreleased = make_batch(live=False)
    db.session.commit()

    assert catalog.sold_out_facts(draft.id) is None
    assert catalog.sold_out_facts(unreleased.id) is None
    assert catalog.sold_out_facts(10**9) is None
    assert catalog.sold_out_facts(0) is None


def test_the_sold_out_answer_reads_one_row_after_the_hold_attempt(app, client):
    """Most of a flash crowd arrives after the last unit is gone. After the hold statement has
    refused, the answer costs the page's own row (batch, product, drop, the batch after it and
    the customer's place in line: one statement) and nothing more: the header is drawn from the
    session, and the page is kept per set of facts."""
    drop = _live_drop()
    product = make_product(drop.maker)
    batches = [make_batch(product, drop, number=n, edition_size=1, limit=1) for n in (1, 2, 3)]
    batches[1].follows_batch_id = batches[0].id
    for batch in (batches[0], batches[2]):
        _take_all(batch)
    csrf = _signed_in(client, make_customer(), drop.slug)
    target = batches[0].id
    db.session.remove()
    on_postgresql = db.engine.dialect.name == "postgresql"

    with (statements_sent if on_postgresql else recorded_statements)(db.engine) as statements:
        response = _buy(client, target, 1, csrf)
    statements = [s for s in statements if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))]

    assert response.status_code == 409 and "Batch No. 2 is next." in response.text
    # PostgreSQL: the hold is one statement; SQLite runs its reads as three.
    hold = 1 if on_postgresql else 3
    after_the_hold = statements[hold:]
    assert len(after_the_hold) == 1, "\n".join(statements)
    assert "waitlist_places" in after_the_hold[0]
    assert not any("batch_images" in s for s in after_the_hold)  # the drop is not rendered


def test_visitors_with_the_same_facts_share_the_page_but_each_gets_their_own_token(app):
    drop = _live_drop()
    gone = make_batch(drop=drop, edition_size=2, limit=2)
    _take_all(gone)
    customers = [make_customer(), make_customer()]
    db.session.commit()
    clients = [app.test_client() for _ in customers]
    tokens = [
        _signed_in(c, customer, drop.slug) for c, customer in zip(clients, customers, strict=True)
    ]

    pages = [
        _buy(c, gone.id, 1, token).get_data(as_text=True)
        for c, token in zip(clients, tokens, strict=True)
    ]

    shown = [unsigned(_CSRF.findall(page)[-1]) for page in pages]
    assert shown == [unsigned(token) for token in tokens] and tokens[0] != tokens[1]
    assert all("<!--slot-" not in page and "csrf-" not in page for page in pages)
    joins = [
        c.post(f"/waitlist/batches/{gone.id}/join", data={"csrf_token": t, "quantity": "1"})
        for c, t in zip(clients, tokens, strict=True)
    ]
    assert [join.status_code for join in joins] == [303, 303]
    db.session.rollback()
    assert all(waitlist.active_place(customer, gone.id) for customer in customers)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_sold_out_page_fits_an_edition_of_one(app, client):
    drop = _live_drop()
    gone = make_batch(drop=drop, edition_size=1, limit=1)
    gone.unit_label, gone.unit_singular = "scarves", "scarf"
    _take_all(gone, paid=True)
    csrf = _signed_in(client, make_customer(), drop.slug)

    html = _buy(client, gone.id, 1, csrf).get_data(as_text=True)

    assert "The only scarf of this batch has been bought." in html
    assert "Every scarf found a home." in html

"""The drop pages' shared cache (shop/page_cache.py): every maker edit bumps the drop's
content version in its own transaction and shows on the very next request; live numbers are
at most a second old and cost a warm request no query; the drop page is rendered once per key
and shared, with nothing personal in what is shared.

Each test runs on SQLite and PostgreSQL, with the cache in the process's memory and in Redis.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest

from shop import audit, clock, drops, inventory, operators, page_cache, products, users
from shop.extensions import db
from shop.models import BatchImage, Drop
from shop.storefront.views import PERSONAL_CACHE_CONTROL, SHARED_CACHE_CONTROL
from testkit.factories import make_batch, make_customer, make_drop, make_maker
from tests.support import redis_server
from tests.support.clients import log_in
from tests.support.warm import warmed
from tests.support.wire import recorded_statements, statements_of


@pytest.fixture(params=["memory", "redis"])
def app_overrides(request):
    with redis_server.shared_store(request.param) as overrides:
        yield overrides


def live_drop(maker=None) -> Drop:
    now = clock.now()
    return make_drop(maker, opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=1))


def _edit_story(drop, batch):
    details = drops.DropDetails(
        title=drop.title, story="A **new** story", batch_ids=[batch.id], slug=drop.slug
    )
    drops.update_drop(drop, details, actor=audit.CLI, now=clock.now())
    return "<strong>new</strong> story"


def _edit_price(_drop, batch):
    details = products.BatchDetails(
        number=batch.number,
        edition_size=batch.edition_size,
        price=4321,
        currency=batch.currency,
        per_customer_limit=batch.per_customer_limit,
    )
    products.update_batch(batch, details, actor=audit.CLI, now=clock.now())
    return "43.21"


def _edit_product(_drop, batch):
    products.update_product(batch.product, name="Renamed Rye", description="", actor=audit.CLI)
    return "Renamed Rye"


def _edit_picture(_drop, batch):
    image = BatchImage(
        batch=batch,
        filename="x.jpg",
        content_type="image/jpeg",
        width=8,
        height=6,
        position=0,
        slot=0,
        alt="Old words",
    )
    db.session.add(image)
    db.session.flush()
    products.update_image_alt(image, "The cask in the snow", actor=audit.CLI)
    return "The cask in the snow"


def _edit_maker_name(drop, _batch):
    users.update_settings(
        drop.maker, display_name="Kessler & Daughters", timezone="UTC", actor=audit.CLI
    )
    return "Kessler &amp; Daughters"


def _close(drop, _batch):
    drops.close_drop(drop, actor=audit.CLI, now=clock.now())
    return "This drop has closed"


def _extend_edition(_drop, batch):
    details = products.BatchDetails(
        number=batch.number,
        edition_size=batch.edition_size + 5,
        price=batch.price,
        currency=batch.currency,
        per_customer_limit=batch.per_customer_limit,
        edition_reason="A second cask",
    )
    products.update_batch(batch, details, actor=audit.CLI, now=clock.now())
    return f"of {batch.edition_size} left"


EDITS = [
    _edit_story,
    _edit_price,
    _edit_product,
    _edit_picture,
    _edit_maker_name,
    _close,
    _extend_edition,
]


@pytest.mark.parametrize("edit", EDITS)
def test_every_maker_edit_bumps_the_drops_content_version(app, edit):
    drop = live_drop()
    batch = make_batch(drop=drop, edition_size=20)
    db.session.commit()
    drop_id, before = drop.id, drop.content_version

    edit(drop, batch)
    db.session.commit()

    assert db.session.get(Drop, drop_id, populate_existing=True).content_version > before


@pytest.mark.parametrize("visitor", ["anonymous", "signed in"])
@pytest.mark.parametrize("edit", EDITS)
def test_a_makers_edit_shows_on_the_very_next_drop_page(client, edit, visitor):
    drop = live_drop()
    batch = make_batch(drop=drop, edition_size=20)
    customer = make_customer()
    db.session.commit()
    if visitor == "signed in":
        log_in(client, customer)
    page = f"/drops/{drop.slug}"
    assert client.get(page).status_code == 200  # rendered and cached
    assert client.get(page).status_code == 200  # and served from the cache

    shown = edit(drop, batch)
    db.session.commit()

    assert shown in client.get(page).get_data(as_text=True)


def test_an_anonymous_drop_page_is_shared_and_holds_nothing_personal(client):
    drop = live_drop()
    make_batch(drop=drop, edition_size=20)
    db.session.commit()
    page = f"/drops/{drop.slug}"

    first = client.get(page)
    second = client.get(page)

    assert first.status_code == second.status_code == 200
    assert first.headers["Cache-Control"] == SHARED_CACHE_CONTROL
    assert "Cookie" in first.headers["Vary"]
    assert first.headers["ETag"] == second.headers["ETag"]
    assert first.headers["ETag"].startswith('W/"')
    assert "Set-Cookie" not in first.headers and "Set-Cookie" not in second.headers
    html = second.get_data(as_text=True)
    assert "csrf_token" not in html
    assert "<!--slot-" not in html  # every slot filled
    assert "Log in to buy" in html
    assert "Log out" not in html


def test_a_signed_in_page_has_its_own_pieces_and_is_never_shared(app):
    drop = live_drop()
    batch = make_batch(drop=drop, edition_size=20, limit=3)
    ann, bob = make_customer(), make_customer()
    db.session.commit()
    inventory.hold(batch.id, 2, customer=ann, now=clock.now())
    db.session.commit()
    pages = {}
    for who in (ann, bob):
        client = app.test_client()
        log_in(client, who)
        client.get(f"/drops/{drop.slug}")  # the shell cached by whoever comes first
        pages[who.email] = client.get(f"/drops/{drop.slug}")
    anonymous = app.test_client().get(f"/drops/{drop.slug}").get_data(as_text=True)

    ann_page, bob_page = (pages[who.email] for who in (ann, bob))
    for response in (ann_page, bob_page):
        assert response.headers["Cache-Control"] == PERSONAL_CACHE_CONTROL
        assert "ETag" not in response.headers
    ann_html, bob_html = ann_page.get_data(as_text=True), bob_page.get_data(as_text=True)
    assert "You're holding 2 units" in ann_html and "you can buy 1 more" in ann_html
    assert "You're holding" not in bob_html and "Log out" in bob_html
    tokens = [
        set(re.findall(r'name="csrf_token" value="([^"]+)"', h)) for h in (ann_html, bob_html)
    ]
    assert all(tokens) and not tokens[0] & tokens[1]
    assert "You're holding" not in anonymous and "csrf_token" not in anonymous


def test_accounts_of_the_same_shape_share_pieces_and_each_gets_a_token_that_works(app):
    drop = live_drop()
    batch = make_batch(drop=drop, edition_size=20, limit=2)
    ann, bob = make_customer(), make_customer()
    db.session.commit()
    page, tokens, buys = f"/drops/{drop.slug}", [], []
    for who in (ann, bob):
        client = app.test_client()
        log_in(client, who)
        client.get(page)
        html = client.get(page).get_data(as_text=True)  # the kept pieces, for the second
        token = set(re.findall(r'name="csrf_token" value="([^"]+)"', html))
        assert len(token) == 1 and page_cache.token_mark() not in html
        tokens.append(token.pop())
        buys.append(
            client.post(
                f"/checkout/batches/{batch.id}", data={"quantity": "1", "csrf_token": tokens[-1]}
            )
        )

    assert tokens[0] != tokens[1]
    assert [buy.status_code for buy in buys] == [303, 303]  # each token is its owner's


def test_a_warm_signed_in_drop_page_asks_only_for_the_visitors_own_rows(client):
    drop = live_drop()
    make_batch(drop=drop, edition_size=20)
    make_batch(drop=drop, edition_size=30)
    customer = make_customer()
    db.session.commit()
    page = f"/drops/{drop.slug}"
    log_in(client, customer)
    warmed(lambda: client.get(page), drop.slug)

    with statements_of(db.engine) as statements:
        response = client.get(page)

    assert response.status_code == 200
    if db.engine.dialect.name == "postgresql":  # on the wire, and no BEGIN or ROLLBACK around it
        assert len(statements) == 1, statements
    else:
        statements = [s for s in statements if not s.startswith(("BEGIN", "ROLLBACK"))]
        assert len(statements) == 1, statements
    if not statements[0].startswith("<prepared"):
        assert "users" in statements[0] and "allotments" in statements[0]


def test_an_anonymous_visitor_with_the_pages_etag_gets_a_304(client):
    drop = live_drop()
    batch = make_batch(drop=drop, edition_size=20)
    db.session.commit()
    page = f"/drops/{drop.slug}"
    etag = warmed(lambda: client.get(page), drop.slug).headers["ETag"]

    same = client.get(page, headers={"If-None-Match": etag})
    inventory.hold(batch.id, 1, customer=make_customer(), now=clock.now())
    db.session.commit()
    time.sleep(page_cache.STATE_SECONDS + 0.1)
    changed = client.get(page, headers={"If-None-Match": etag})

    assert same.status_code == 304 and same.get_data() == b""
    assert same.headers["ETag"] == etag
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert "19 of 20 left" in changed.get_data(as_text=True)


def test_the_shared_part_shows_times_in_utc_and_the_visitors_own_part_in_their_zone(app):
    opens = clock.now().replace(microsecond=0) + timedelta(days=2)
    drop = make_drop(opens_at=opens, closes_at=opens + timedelta(days=1))
    make_batch(drop=drop)
    tokyo = make_customer()
    tokyo.timezone = "Asia/Tokyo"
    db.session.commit()
    client = app.test_client()
    log_in(client, tokyo)

    html = client.get(f"/drops/{drop.slug}").get_data(as_text=True)
    anonymous = app.test_client().get(f"/drops/{drop.slug}").get_data(as_text=True)

    assert " JST" not in anonymous  # the shell a Tokyo visitor rendered first holds no JST
    assert "UTC" in anonymous
    assert "UTC" in html  # the shared part; site.js shows it in the browser's zone


def test_an_anonymous_visitor_asks_to_be_notified_in_two_steps(client):
    opens = clock.now() + timedelta(days=2)
    drop = make_drop(opens_at=opens, closes_at=opens + timedelta(days=1))
    make_batch(drop=drop)
    db.session.commit()
    page = client.get(f"/drops/{drop.slug}").get_data(as_text=True)
    assert f'method="get" action="/notify/drops/{drop.slug}"' in page

    form = client.get(f"/notify/drops/{drop.slug}?email=ann%40example.com")
    html = form.get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    done = client.post(
        f"/notify/drops/{drop.slug}",
        data={"csrf_token": token.group(1), "email": "ann@example.com"},
    )

    assert form.status_code == 200 and 'value="ann@example.com"' in html
    assert done.status_code == 303
    assert "Almost done" in client.get(done.headers["Location"]).get_data(as_text=True)


def test_an_operators_suspension_bumps_only_the_makers_drops(app):
    maker = make_maker()
    operator = make_customer()
    operator.is_admin = True
    drop = live_drop(maker)
    other = live_drop()
    db.session.commit()
    versions = (drop.content_version, other.content_version)

    operators.suspend(operator, maker, now=clock.now(), reason="Checking the labels")
    db.session.commit()

    db.session.expire_all()
    assert (drop.content_version, other.content_version) == (versions[0] + 1, versions[1])


def test_an_edition_change_shows_in_the_numbers_on_the_very_next_request(client):
    drop = live_drop()
    batch = make_batch(drop=drop, edition_size=20)
    db.session.commit()
    stock = f"/api/drops/{drop.slug}/stock"
    assert client.get(stock).get_json()["batches"][0]["edition_size"] == 20  # now cached

    _extend_edition(drop, batch)
    db.session.commit()

    assert client.get(stock).get_json()["batches"][0]["edition_size"] == 25


@pytest.mark.parametrize("read", ["anonymous drop page", "stock JSON"])
def test_a_warm_cookieless_read_asks_the_database_nothing(client, read):
    drop = live_drop()
    make_batch(drop=drop)
    db.session.commit()
    path = (
        f"/drops/{drop.slug}" if read == "anonymous drop page" else f"/api/drops/{drop.slug}/stock"
    )
    warmed(lambda: client.get(path), drop.slug)

    with recorded_statements(db.engine) as statements:
        response = client.get(path)

    assert response.status_code == 200
    assert statements == []


def test_live_numbers_are_shared_for_at_most_a_second(client):
    drop = live_drop()
    batch = make_batch(drop=drop, edition_size=10)
    db.session.commit()
    stock = f"/api/drops/{drop.slug}/stock"
    assert client.get(stock).get_json()["batches"][0]["remaining"] == 10

    inventory.hold(batch.id, 2, customer=make_customer(), now=clock.now())
    db.session.commit()
    soon = client.get(stock)
    time.sleep(page_cache.STATE_SECONDS + 0.1)
    later = client.get(stock)

    assert soon.get_json()["batches"][0]["remaining"] in (8, 10)  # a moment old at most
    assert later.get_json()["batches"][0]["remaining"] == 8
    assert later.headers["Cache-Control"] == "public, max-age=1, s-maxage=1"
    assert "Set-Cookie" not in later.headers


def test_the_numbers_turn_live_on_the_second_without_an_edit(client):
    opens = clock.now() + timedelta(seconds=1)
    drop = make_drop(opens_at=opens, closes_at=opens + timedelta(days=1))
    make_batch(drop=drop)
    db.session.commit()
    stock = f"/api/drops/{drop.slug}/stock"
    assert client.get(stock).get_json()["phase"] == "upcoming"

    time.sleep(max(0.0, (opens - clock.now()).total_seconds()) + 0.05)

    assert client.get(stock).get_json()["phase"] == "live"

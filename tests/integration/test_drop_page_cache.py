"""The drop pages' shared cache (shop/page_cache.py): every maker edit bumps the drop's
content version in its own transaction and shows on the very next request; live numbers are
at most a second old and cost a warm request no query.

Each test runs on SQLite and PostgreSQL, with the cache in the process's memory and in Redis.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from shop import audit, clock, drops, inventory, operators, page_cache, products, users
from shop.extensions import db
from shop.models import BatchImage, Drop
from testkit.factories import make_batch, make_customer, make_drop, make_maker
from tests.support import redis_server
from tests.support.wire import recorded_statements


@pytest.fixture(params=["memory", "redis"])
def app_overrides(request):
    if request.param == "memory":
        yield {}
        return
    with redis_server.private_prefix() as prefix:
        yield {"REDIS_URL": redis_server.redis_url(), "RATELIMIT_KEY_PREFIX": prefix}


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


@pytest.mark.parametrize(
    "edit",
    [
        _edit_story,
        _edit_price,
        _edit_product,
        _edit_picture,
        _edit_maker_name,
        _close,
        _extend_edition,
    ],
)
def test_every_maker_edit_bumps_the_drops_content_version(app, edit):
    drop = live_drop()
    batch = make_batch(drop=drop, edition_size=20)
    db.session.commit()
    drop_id, before = drop.id, drop.content_version

    edit(drop, batch)
    db.session.commit()

    assert db.session.get(Drop, drop_id, populate_existing=True).content_version > before


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


def test_a_warm_stock_request_asks_the_database_nothing(client):
    drop = live_drop()
    make_batch(drop=drop)
    db.session.commit()
    stock = f"/api/drops/{drop.slug}/stock"
    client.get(stock)

    with recorded_statements(db.engine) as statements:
        response = client.get(stock)

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

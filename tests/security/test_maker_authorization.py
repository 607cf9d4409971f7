"""Who may use the maker console: every /maker route and method, for the owner (maker A),
another maker (B), a customer and an anonymous visitor.

The routes come from ``app.url_map``, so a new console route is in the matrix the moment it
exists; a route with a new kind of object in its URL fails here until the matrix knows how to
point it at maker A's object.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

import config as settings
from shop import clock, create_app, inventory, messages, products, shipping_rates
from shop.extensions import db
from shop.models import (
    AuditEntry,
    Batch,
    BatchImage,
    Drop,
    Message,
    Order,
    Product,
    ShippingRate,
)
from shop.models.drop import DRAFT
from shop.models.message import FAILED
from testkit.factories import make_batch, make_customer, make_drop, make_maker, make_product
from tests.support.console import browser, image_bytes


def _console_routes() -> list[tuple[str, str, str]]:
    config = settings.TestingConfig()
    config.SQLALCHEMY_DATABASE_URI = "sqlite://"
    app = create_app(config)
    found = []
    for rule in app.url_map.iter_rules():
        if rule.rule == "/maker" or rule.rule.startswith("/maker/"):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                found.append((rule.endpoint, rule.rule, method))
    assert len(found) > 20, "the maker console routes were not found"
    return sorted(found)


ROUTES = _console_routes()


@pytest.fixture
def owner_world(app):
    """Maker A with one of everything: product, batch with an image, a draft drop, a paid order."""
    owner = make_maker(name="Maker A")
    product = make_product(owner, name="Secret Rye")
    drop = make_drop(owner, state=DRAFT, opens_at=None, closes_at=None, title="Secret Drop")
    batch = make_batch(product, drop, edition_size=10, limit=5)
    image = products.add_image(batch, image_bytes(), alt="A bottle", actor=owner, now=clock.now())
    live_drop = make_drop(owner, opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    sold = make_batch(make_product(owner, name="Sold Rye"), live_drop, edition_size=10)
    order = inventory.hold(sold.id, 1, customer=make_customer(), now=clock.now())
    inventory.confirm(order, now=clock.now(), payment_intent_id="pi_secret", customer_email=None)
    messages.order_paid(order)
    failed = db.session.scalar(select(Message).where(Message.order_id == order.id))
    failed.state = FAILED  # its retry button is a console route
    rate = shipping_rates.save_rate(
        owner, shipping_rates.RateDetails("Secret post", "DE", 900, batch.currency), actor=owner
    )
    db.session.commit()
    return {
        "owner": owner,
        "args": {
            "product_id": product.id,
            "batch_id": batch.id,
            "image_id": image.id,
            "drop_id": drop.id,
            "public_id": order.public_id,
            "message_id": failed.id,
            "rate_id": rate.id,
        },
        "order": order,
    }


def _url(rule: str, args: dict) -> str:
    path = rule
    for name in (
        "product_id",
        "batch_id",
        "image_id",
        "drop_id",
        "public_id",
        "message_id",
        "rate_id",
    ):
        for converter in ("int:", ""):
            path = path.replace(f"<{converter}{name}>", str(args[name]))
    assert "<" not in path, f"teach the matrix the argument in {rule}"
    return path


def _snapshot() -> tuple:
    """Everything maker A owns, as stored: a refused request must leave it all unchanged."""
    db.session.expire_all()
    return (
        [(p.id, p.name, p.description) for p in db.session.scalars(select(Product))],
        [
            (b.id, b.edition_size, b.price, b.drop_id, b.story)
            for b in db.session.scalars(select(Batch).order_by(Batch.id))
        ],
        [
            (d.id, d.state, d.title, d.opens_at, d.closes_at)
            for d in db.session.scalars(select(Drop))
        ],
        [(o.id, o.state, o.carrier, o.shipped_at) for o in db.session.scalars(select(Order))],
        [(m.id, m.state) for m in db.session.scalars(select(Message).order_by(Message.id))],
        db.session.scalar(select(func.count()).select_from(BatchImage)),
        db.session.scalar(select(func.count()).select_from(AuditEntry)),
        [(r.id, r.name, r.countries, r.amount) for r in db.session.scalars(select(ShippingRate))],
    )


def _send(client, method: str, url: str):
    if method == "GET":
        return client.get(url)
    return client.form(url, {})


@pytest.mark.parametrize(("endpoint", "rule", "method"), ROUTES, ids=lambda v: str(v))
def test_every_console_route_is_for_its_maker_only(app, owner_world, endpoint, rule, method):
    url = _url(rule, owner_world["args"])
    takes_object = "<" in rule
    before = _snapshot()

    anonymous = _send(browser(app), method, url)
    assert anonymous.status_code == 302, (endpoint, anonymous.status_code)
    login = urlsplit(anonymous.headers["Location"])
    assert login.path == "/account/login" and "next=" in login.query

    customer = _send(browser(app, make_customer()), method, url)
    assert customer.status_code == 403, (endpoint, customer.status_code)

    stranger = _send(browser(app, make_maker(name="Maker B")), method, url)
    if takes_object:
        assert stranger.status_code == 404, (endpoint, stranger.status_code)
    else:
        assert stranger.status_code not in (403, 404, 500), (endpoint, stranger.status_code)
    assert "Secret" not in stranger.get_data(as_text=True)
    assert "pi_secret" not in stranger.get_data(as_text=True)

    assert _snapshot() == before, f"{method} {rule} changed maker A's data for someone else"

    owner = _send(browser(app, owner_world["owner"]), method, url)
    assert owner.status_code not in (403, 404) and owner.status_code < 500, (
        endpoint,
        owner.status_code,
    )


def test_another_makers_lists_and_exports_never_include_my_orders(app, owner_world):
    stranger = browser(app, make_maker())
    order = owner_world["order"]
    drop_id = owner_world["args"]["drop_id"]

    for url in (
        "/maker/",
        "/maker/orders",
        f"/maker/orders?drop={drop_id}",
        f"/maker/orders?batch={order.batch_id}",
        "/maker/orders.csv",
        f"/maker/orders.csv?drop={order.batch.drop_id}",
        "/maker/drops",
        "/maker/products",
        "/maker/drops/new",
    ):
        html = stranger.get(url).get_data(as_text=True)
        assert order.public_id[:8] not in html and "Secret" not in html, url
        assert "Sold Rye" not in html, url


def test_a_console_post_without_the_csrf_token_is_refused(app, owner_world):
    owner = browser(app, owner_world["owner"])
    drop_id = owner_world["args"]["drop_id"]

    response = owner.post(f"/maker/drops/{drop_id}/open", data={"when": "now", "confirm": "y"})

    assert response.status_code == 400
    assert db.session.get(Drop, drop_id).state == DRAFT


def test_another_maker_cannot_put_my_batch_in_their_drop(app, owner_world):
    stranger_user = make_maker()
    db.session.commit()
    stranger = browser(app, stranger_user)
    batch_id = owner_world["args"]["batch_id"]

    response = stranger.form("/maker/drops/new", {"title": "Mine now", "batches": [batch_id]})

    assert response.status_code == 422
    assert db.session.get(Batch, batch_id).drop_id == owner_world["args"]["drop_id"]
    assert db.session.scalar(select(Drop).where(Drop.maker_id == stranger_user.id)) is None

"""Everything a maker does is audited: products, batches, pictures, settings, shipping rates,
drops, orders and emails — each through its real console form, each entry naming the maker,
their shop and what it is about; the maker's history page shows them. What the command line
does is recorded with the actor ``cli``."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from shop import clock, inventory, messages, products, shipping_rates
from shop.extensions import db
from shop.models import AuditEntry, Drop, Message, User
from shop.models.audit import CLI, PERSON
from shop.models.drop import DRAFT
from shop.models.message import FAILED
from testkit.factories import make_batch, make_customer, make_drop, make_maker, make_product
from tests.support.console import BATCH, browser, image_bytes

RATE = {
    "name": "Europe",
    "countries": "de, fr",
    "amount": "38.00",
    "currency": "usd",
    "free_above": "",
    "min_days": "",
    "max_days": "",
    "batch": "0",
}


@dataclass
class Shop:
    maker: User
    ids: dict


@pytest.fixture
def shop(app) -> Shop:
    """A maker with a product, a draft drop holding a batch with a picture, a shipping rate, and
    an open drop with a paid order whose receipt failed."""
    maker = make_maker(name="Ada")
    product = make_product(maker, name="Highland Rye")
    draft = make_drop(maker, state=DRAFT, opens_at=None, closes_at=None, title="Winter")
    batch = make_batch(product, draft, edition_size=10, limit=5)
    image = products.add_image(batch, image_bytes(), alt="A bottle", actor=maker, now=clock.now())
    rate = shipping_rates.save_rate(
        maker, shipping_rates.RateDetails("Post", "DE", 900, "usd"), actor=maker
    )
    live = make_drop(maker, opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    sold = make_batch(make_product(maker, name="Sold Rye"), live, edition_size=10)
    order = inventory.hold(sold.id, 1, customer=make_customer(), now=clock.now())
    inventory.confirm(order, now=clock.now(), payment_intent_id="pi_1", customer_email=None)
    messages.order_paid(order)
    message = db.session.scalar(select(Message).where(Message.order_id == order.id))
    message.state = FAILED
    db.session.execute(AuditEntry.__table__.delete())  # only what the test does is counted
    db.session.commit()
    return Shop(
        maker,
        {
            "product": product.id,
            "batch": batch.id,
            "image": image.id,
            "rate": rate.id,
            "draft": draft.id,
            "live": live.id,
            "order": order.public_id,
            "message": message.id,
        },
    )


def _batch_form(**changes) -> dict:
    """The batch form as the fixture's batch stands (testkit's make_batch), with ``changes``."""
    current = {
        **BATCH,
        "edition_size": "10",
        "unit_price": "25.00",
        "per_customer_limit": "5",
        "unit_label": "units",
        "unit_singular": "unit",
        "summary": "Grown nearby.",
        "story": "## Origin\nGrown *nearby*.",
        "origin_place": "The valley",
        "produced_on": "",
        "inputs": "Rye",
        "making": "Distilled twice",
    }
    return {**current, **changes}


# (action, path, form) for each thing a maker does in the console; ``{name}`` is an id above.
ACTIONS: list[tuple[str, str, dict | Callable[[], dict]]] = [
    ("product.created", "/maker/products/new", {"name": "Apple Brandy", "description": ""}),
    ("product.edited", "/maker/products/{product}", {"name": "Highland Rye II"}),
    ("batch.created", "/maker/products/{product}/batches/new", {**BATCH, "number": "2"}),
    ("batch.edited", "/maker/batches/{batch}", _batch_form(edition_size="12")),
    (
        "batch.image_added",
        "/maker/batches/{batch}/images",
        lambda: {"alt": "The label", "image": (io.BytesIO(image_bytes()), "a.jpg")},
    ),
    ("batch.image_described", "/maker/images/{image}/alt", {"alt": "The bottle, side"}),
    ("batch.image_removed", "/maker/images/{image}/delete", {}),
    ("settings.edited", "/maker/settings", {"display_name": "Ada M.", "timezone": "Asia/Tokyo"}),
    ("shipping.rate_added", "/maker/shipping", RATE),
    ("shipping.rate_edited", "/maker/shipping/{rate}", {**RATE, "amount": "40.00"}),
    ("shipping.rate_removed", "/maker/shipping/{rate}/delete", {}),
    ("drop.created", "/maker/drops/new", {"title": "Spring"}),
    ("drop.edited", "/maker/drops/{draft}/edit", {"title": "Winter"}),  # its batch taken out
    ("drop.edited", "/maker/drops/{draft}/edit", {"title": "Deep", "batches": "{batch}"}),
    ("drop.opened", "/maker/drops/{draft}/open", {"when": "now", "confirm": "y"}),
    ("drop.closed", "/maker/drops/{live}/close", {"when": "now", "confirm": "y"}),
    ("order.shipped", "/maker/orders/{order}/ship", {"carrier": "UPS", "tracking_number": "1Z"}),
    ("order.message_retried", "/maker/messages/{message}/retry", {}),
]


@pytest.mark.parametrize(("action", "path", "form"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_each_thing_a_maker_does_in_the_console_leaves_an_audit_entry(
    app, shop, action, path, form
):
    console = browser(app, shop.maker)
    data = form() if callable(form) else form
    data = {k: v.format(**shop.ids) if isinstance(v, str) else v for k, v in data.items()}

    response = console.form(
        path.format(**shop.ids),
        data,
        content_type="multipart/form-data" if "image" in data else None,
    )

    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    [entry] = db.session.scalars(select(AuditEntry))
    assert entry.action == action
    assert (entry.actor_kind, entry.actor_id, entry.maker_id) == (
        PERSON,
        shop.maker.id,
        shop.maker.id,
    )
    history = console.get("/maker/history").get_data(as_text=True)
    assert history.count('class="timeline__item"') == 1 and "Ada" in history


def test_a_batch_edit_says_what_changed_from_what(app, shop):
    browser(app, shop.maker).form(
        f"/maker/batches/{shop.ids['batch']}", _batch_form(edition_size="12", unit_price="30.00")
    )

    [entry] = db.session.scalars(select(AuditEntry))
    assert entry.detail == "edition size 10 → 12; price $25.00 → $30.00"
    assert entry.batch_id == shop.ids["batch"] and entry.drop_id == shop.ids["draft"]
    assert entry.product_id == shop.ids["product"]


def test_a_refused_edit_leaves_no_entry(app, shop):
    response = browser(app, shop.maker).form(
        "/maker/settings", {"display_name": "Ada", "timezone": "Mars/Olympus"}
    )

    assert response.status_code == 422
    assert db.session.scalars(select(AuditEntry)).all() == []


def test_saving_without_a_change_records_nothing(app, shop):
    browser(app, shop.maker).form(
        f"/maker/products/{shop.ids['product']}",
        {"name": "Highland Rye", "description": "Made carefully."},
    )

    assert db.session.scalars(select(AuditEntry)).all() == []


def test_another_makers_history_shows_none_of_mine(app, shop):
    browser(app, shop.maker).form("/maker/products/new", {"name": "Secret Brandy"})

    stranger = browser(app, make_maker())
    page = stranger.get("/maker/history").get_data(as_text=True)

    assert "Secret Brandy" not in page and "Nothing yet" in page


def test_the_history_pages_back_through_older_entries(app, shop):
    from shop import audit

    for n in range(105):
        audit.record("product.edited", actor=shop.maker, maker=shop.maker, detail=f"edit {n:03}")
    db.session.commit()
    console = browser(app, shop.maker)

    first = console.get("/maker/history").get_data(as_text=True)
    older = db.session.scalars(select(AuditEntry.id).order_by(AuditEntry.id)).all()[4]
    second = console.get(f"/maker/history?before={older + 1}").get_data(as_text=True)

    assert "edit 104" in first and "edit 005" in first and "edit 004" not in first
    assert "Older entries" in first
    assert "edit 004" in second and "edit 000" in second and "Older entries" not in second


# --- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "action"),
    [(["open-drop", "winter"], "drop.opened"), (["close-drop", "spring"], "drop.closed")],
)
def test_a_drop_opened_or_closed_from_the_command_line_is_audited_as_cli(app, runner, args, action):
    maker = make_maker()
    winter = make_drop(maker, state=DRAFT, opens_at=None, closes_at=None)
    winter.slug = "winter"
    make_batch(drop=winter)
    spring = make_drop(maker, opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    spring.slug = "spring"
    db.session.commit()

    result = runner.invoke(args=["shop", *args])

    assert result.exit_code == 0, result.output
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == action))
    assert (entry.actor_kind, entry.actor_id, entry.maker_id) == (CLI, None, maker.id)
    page = browser(app, maker).get(f"/maker/drops/{entry.drop_id}").get_data(as_text=True)
    assert "Command line (<code>cli</code>)" in page


def test_a_maker_created_from_the_command_line_starts_their_history_as_cli(app, runner):
    result = runner.invoke(
        args=["shop", "create-maker", "rose@example.com", "--password-stdin"],
        input="a long enough password\n",
    )

    assert result.exit_code == 0, result.output
    rose = db.session.scalar(select(User).where(User.email == "rose@example.com"))
    [entry] = db.session.scalars(select(AuditEntry))
    assert (entry.action, entry.actor_kind, entry.maker_id) == ("account.created", CLI, rose.id)
    assert "Command line" in browser(app, rose).get("/maker/history").get_data(as_text=True)


def test_the_database_refuses_an_entry_whose_actor_and_kind_disagree(app, shop):
    from sqlalchemy.exc import IntegrityError

    db.session.add(AuditEntry(action="x", actor_kind=CLI, actor_id=shop.maker.id))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
    assert db.session.get(Drop, shop.ids["draft"]) is not None

"""Editing rules for batches and drops (docs/ARCHITECTURE.md): editions grow, never shrink
below what is taken; prices never touch existing orders; live edits are audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from shop import clock, drops, inventory, products
from shop.errors import EditNotAllowed
from shop.extensions import db
from shop.models import AuditEntry, Batch, Order
from shop.models.drop import DRAFT
from testkit.factories import (
    AT_DROP,
    BEFORE_DROP,
    make_batch,
    make_customer,
    make_drop,
    make_maker,
    make_product,
)
from tests.support.console import browser


def _details(batch: Batch, **changes) -> products.BatchDetails:
    values = {
        "number": batch.number,
        "edition_size": batch.edition_size,
        "price": batch.price,
        "currency": batch.currency,
        "per_customer_limit": batch.per_customer_limit,
        "unit_label": batch.unit_label,
        "unit_singular": batch.unit_singular,
        "summary": batch.summary,
        "story": batch.story,
        "origin_place": batch.origin_place,
        "produced_on": batch.produced_on,
        "inputs": batch.inputs,
        "process": batch.process,
    }
    return products.BatchDetails(**{**values, **changes})


@pytest.fixture
def sold_three_held_two(app):
    """A batch of 10 on sale at the frozen AT_DROP: 3 units paid, 2 held."""
    batch = make_batch(edition_size=10, limit=5)
    buyer, holder = make_customer(), make_customer()
    inventory.confirm(inventory.hold(batch.id, 3, customer=buyer, now=AT_DROP), now=AT_DROP)
    inventory.hold(batch.id, 2, customer=holder, now=AT_DROP)
    db.session.commit()
    return batch


def _audit(action: str) -> list[AuditEntry]:
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_an_edition_on_sale_cannot_shrink_below_sold_plus_held(sold_three_held_two):
    batch = sold_three_held_two
    maker = batch.product.maker

    with pytest.raises(EditNotAllowed) as refused:
        products.update_batch(batch, _details(batch, edition_size=4), actor=maker, now=AT_DROP)

    assert "3 sold and 2 held" in refused.value.message
    assert "can't be smaller than 5" in refused.value.message
    db.session.rollback()
    assert db.session.get(Batch, batch.id).edition_size == 10


def test_an_edition_on_sale_can_shrink_to_exactly_what_is_taken(sold_three_held_two):
    batch = sold_three_held_two

    products.update_batch(
        batch,
        _details(batch, edition_size=5, edition_reason="Two casks leaked."),
        actor=None,
        now=AT_DROP,
    )
    db.session.commit()

    assert batch.edition_size == 5 and batch.remaining == 0


def test_an_edition_on_sale_can_grow_and_the_edit_is_audited(sold_three_held_two):
    batch = sold_three_held_two
    maker = batch.product.maker

    changed = products.update_batch(
        batch,
        _details(batch, edition_size=12, edition_reason="Two more casks."),
        actor=maker,
        now=AT_DROP,
    )
    db.session.commit()

    assert changed == ["edition size"] and batch.edition_size == 12 and batch.remaining == 7
    [entry] = _audit("batch.edited")
    assert entry.actor_id == maker.id and entry.batch_id == batch.id
    assert entry.drop_id == batch.drop_id and entry.detail == "edition size 10 → 12"
    assert entry.created_at is not None


def test_the_shrink_rule_reads_the_database_not_a_stale_object(sold_three_held_two):
    """The check is the UPDATE's own WHERE: a hold committed after the batch was loaded counts."""
    batch = sold_three_held_two
    stale_sold, stale_held = batch.sold, batch.held  # 3 and 2, as loaded
    db.session.execute(  # another request holds 4 more meanwhile (same statement as a hold)
        Batch.__table__.update().where(Batch.id == batch.id).values(held=Batch.held + 4)
    )
    assert (batch.sold, batch.held) == (stale_sold, stale_held)  # the object hasn't noticed

    with pytest.raises(EditNotAllowed, match="can't be smaller than 9"):
        products.update_batch(
            batch,
            _details(batch, edition_size=6, edition_reason="Breakage."),
            actor=None,
            now=AT_DROP,
        )


def test_a_price_change_never_touches_existing_orders(sold_three_held_two):
    batch = sold_three_held_two
    orders_before = [(o.unit_price, o.amount) for o in _orders_of(batch)]

    products.update_batch(batch, _details(batch, price=3100), actor=None, now=AT_DROP)
    db.session.commit()
    later = inventory.hold(batch.id, 1, customer=make_customer(), now=AT_DROP)

    assert [(o.unit_price, o.amount) for o in _orders_of(batch)][:2] == orders_before
    assert orders_before == [(2500, 7500), (2500, 5000)]
    assert (later.unit_price, later.amount) == (3100, 3100)
    [entry] = _audit("batch.edited")
    assert entry.detail == "price $25.00 → $31.00"


def _orders_of(batch: Batch):
    db.session.expire_all()
    return list(
        db.session.scalars(select(Order).where(Order.batch_id == batch.id).order_by(Order.id))
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"currency": "eur"}, "currency can't change"), ({"number": 2}, "number can't change")],
)
def test_number_and_currency_are_fixed_once_the_drop_has_opened(
    sold_three_held_two, changes, message
):
    batch = sold_three_held_two

    with pytest.raises(EditNotAllowed, match=message):
        products.update_batch(batch, _details(batch, **changes), actor=None, now=AT_DROP)


def test_before_the_drop_opens_everything_can_change_and_the_edit_is_audited_too(app):
    batch = make_batch(edition_size=10)  # its drop opens at OPENS_AT

    products.update_batch(
        batch,
        _details(batch, edition_size=3, currency="eur", number=4, price=990),
        actor=None,
        now=BEFORE_DROP,
    )
    db.session.commit()

    assert (batch.edition_size, batch.currency, batch.number, batch.price) == (3, "eur", 4, 990)
    [entry] = _audit("batch.edited")
    assert "edition size 10 → 3" in entry.detail and "batch number" in entry.detail


# --- through the view -----------------------------------------------------------------------


@pytest.fixture
def live_batch(app):
    """A batch of 10 in a drop that is open by the real clock, with 3 units held."""
    maker = make_maker()
    drop = make_drop(maker, opens_at=clock.now() - timedelta(hours=1), closes_at=None)
    batch = make_batch(make_product(maker), drop, edition_size=10, limit=5)
    inventory.hold(batch.id, 3, customer=make_customer(), now=clock.now())
    db.session.commit()
    return batch


def _form(batch: Batch, **changes) -> dict:
    values = {
        "number": batch.number,
        "edition_size": batch.edition_size,
        "unit_label": batch.unit_label,
        "unit_singular": batch.unit_singular,
        "unit_price": f"{batch.price / 100:.2f}",
        "currency": batch.currency,
        "per_customer_limit": batch.per_customer_limit,
        "summary": batch.summary,
        "story": batch.story,
        "origin_place": batch.origin_place,
        "inputs": batch.inputs,
        "making": batch.process,
    }
    return {**values, **changes}


def test_the_batch_form_shows_why_a_shrink_was_refused_and_changes_nothing(app, live_batch):
    console = browser(app, live_batch.product.maker)

    response = console.form(
        f"/maker/batches/{live_batch.id}", _form(live_batch, edition_size=2, unit_price="30.00")
    )

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "wasn't made" in html and "can&#39;t be smaller than 3" in html
    assert 'value="2"' in html  # the form keeps what the maker typed
    batch = db.session.get(Batch, live_batch.id)
    assert (batch.edition_size, batch.price) == (10, 2500)
    assert _audit("batch.edited") == []


def test_a_live_edit_through_the_form_is_audited_and_shown_on_the_drop_page(app, live_batch):
    maker = live_batch.product.maker
    console = browser(app, maker)

    response = console.form(
        f"/maker/batches/{live_batch.id}",
        _form(live_batch, edition_size=12, edition_reason="Two more casks turned out sound."),
    )

    assert response.status_code == 303
    page = console.get(f"/maker/drops/{live_batch.drop_id}").get_data(as_text=True)
    assert "Edited a batch" in page and "edition size 10 → 12" in page
    assert maker.display_name in page


def test_a_drop_that_has_opened_keeps_its_batches(app, live_batch):
    maker = live_batch.product.maker
    other = make_batch(make_product(maker), live=False)
    drop = live_batch.drop
    console = browser(app, maker)

    response = console.form(
        f"/maker/drops/{drop.id}/edit",
        {"title": "New title", "story": "", "batches": [live_batch.id, other.id]},
    )

    assert response.status_code == 422
    assert "Batches can&#39;t be added or removed" in response.get_data(as_text=True)
    assert [b.id for b in db.session.get(type(drop), drop.id).batches] == [live_batch.id]


def test_a_batch_already_in_another_drop_cannot_be_claimed(app):
    maker = make_maker()
    batch = make_batch(make_product(maker), make_drop(maker, state=DRAFT))
    db.session.commit()

    with pytest.raises(EditNotAllowed, match="already in another drop"):
        drops.create_drop(
            maker,
            drops.DropDetails(title="Second", batch_ids=[batch.id]),
            actor=maker,
            now=AT_DROP,
        )


def test_only_free_batches_are_offered_for_a_new_drop(app):
    maker = make_maker()
    taken = make_batch(make_product(maker), make_drop(maker, state=DRAFT), number=1)
    free = make_batch(taken.product, number=2, live=False)
    db.session.commit()
    console = browser(app, maker)

    html = console.get("/maker/drops/new").get_data(as_text=True)
    refused = console.form("/maker/drops/new", {"title": "Again", "batches": [taken.id]})

    assert f'value="{free.id}"' in html and f'value="{taken.id}"' not in html
    assert refused.status_code == 422

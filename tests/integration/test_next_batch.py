"""The next batch on sell-out (issue 17, item 3), on SQLite and PostgreSQL: a batch lined up
behind an earlier one of its product sells only while that one has nothing left to sell —
decided in the hold statement, with no job — and the pages say so."""

from __future__ import annotations

import itertools
import time

import pytest
from sqlalchemy import select

from shop import audit, drops, holds, inventory, page_cache
from shop.errors import DropNotLive, EditNotAllowed, InvalidInput, NotOnSaleYet
from shop.extensions import db
from shop.models import Batch
from shop.models.drop import DRAFT
from shop.models.order import EXPIRED
from testkit.factories import (
    AT_DROP,
    BEFORE_DROP,
    make_batch,
    make_customer,
    make_drop,
    make_product,
)
from tests.support.console import browser
from tests.support.stripe import live_batch


def _seven_and_eight(drop=None, *, seven: int = 2, eight: int = 3):
    drop = drop or make_drop()
    product = make_product(drop.maker)
    no7 = make_batch(product, drop, number=7, edition_size=seven, limit=2)
    no8 = make_batch(product, drop, number=8, edition_size=eight, limit=2)
    no8.follows_batch_id = no7.id
    db.session.commit()
    return no7, no8


def test_a_lined_up_batch_is_not_sold_while_the_one_before_has_units(app):
    _no7, no8 = _seven_and_eight()

    with pytest.raises(NotOnSaleYet, match=r"Batch No\. 8 goes on sale when No\. 7 sells out"):
        inventory.hold(no8.id, 1, customer=make_customer(), now=AT_DROP)
    db.session.rollback()
    assert db.session.get(Batch, no8.id).held == 0


def test_the_next_batch_goes_on_sale_the_moment_the_one_before_sells_out(app):
    no7, no8 = _seven_and_eight()
    inventory.hold(no7.id, 2, customer=make_customer(), now=AT_DROP)
    db.session.commit()

    order = inventory.hold(no8.id, 2, customer=make_customer(), now=AT_DROP)
    db.session.commit()

    assert order.batch_id == no8.id
    assert db.session.get(Batch, no8.id).held == 2


def test_a_unit_of_the_one_before_freed_again_is_sold_before_the_next_batch(app):
    no7, no8 = _seven_and_eight()
    first = inventory.hold(no7.id, 2, customer=make_customer(), now=AT_DROP)
    db.session.commit()
    inventory.release(first, EXPIRED, now=AT_DROP)
    db.session.commit()

    with pytest.raises(NotOnSaleYet):
        inventory.hold(no8.id, 1, customer=make_customer(), now=AT_DROP)


def test_a_lined_up_batch_of_a_drop_that_is_not_live_says_not_live(app):
    _no7, no8 = _seven_and_eight()
    with pytest.raises(DropNotLive) as refused:
        inventory.hold(no8.id, 1, customer=make_customer(), now=BEFORE_DROP)
    assert not isinstance(refused.value, NotOnSaleYet)


_ON_SALE = holds.statement(f"SELECT {holds.ON_SALE} FROM batches b WHERE b.id = :batch_id")  # noqa: S608


def test_waiting_for_says_what_the_hold_statement_decides(app):
    """``Batch.waiting_for`` (pages) and ``holds.ON_SALE`` (the hold) are one rule."""
    cases = []
    for sold, held in itertools.product(range(3), range(3)):
        if sold + held > 2:
            continue
        no7, no8 = _seven_and_eight(seven=2)
        no7.sold, no7.held = sold, held
        cases.append(no8)
    db.session.commit()

    for no8 in cases:
        in_sql = bool(db.session.execute(_ON_SALE, {"batch_id": no8.id}).scalar())
        assert in_sql == (no8.waiting_for is None)
    assert {no8.waiting_for is None for no8 in cases} == {True, False}


def test_the_drop_page_says_batch_8_goes_on_sale_when_7_sells_out(app, client):
    no7 = live_batch(number=7, edition_size=1, limit=1)
    no8 = make_batch(no7.product, no7.drop, number=8, edition_size=5, limit=1)
    no8.follows_batch_id = no7.id
    db.session.commit()

    before = client.get(f"/drops/{no7.drop.slug}").get_data(as_text=True)
    inventory.hold(no7.id, 1, customer=make_customer(), now=no7.drop.opens_at)
    db.session.commit()
    time.sleep(page_cache.STATE_SECONDS + 0.1)  # the page's numbers are at most that old
    after = client.get(f"/drops/{no7.drop.slug}").get_data(as_text=True)

    assert "Batch No. 8 goes on sale when No. 7 sells out." in before
    assert "Batch No. 8 goes on sale when No. 7 sells out." not in after


def test_a_maker_lines_up_a_batch_behind_an_earlier_one_before_the_drop_opens(app):
    maker_drop = make_drop(state=DRAFT, opens_at=None)
    product = make_product(maker_drop.maker)
    no7 = make_batch(product, maker_drop, number=7)
    no8 = make_batch(product, maker_drop, number=8)
    db.session.commit()
    console = browser(app, maker_drop.maker)

    answer = console.form(
        f"/maker/drops/{maker_drop.id}/batches/{no8.id}/line-up", {"after": str(no7.id)}
    )

    assert answer.status_code == 303
    assert db.session.get(Batch, no8.id).follows_batch_id == no7.id
    page = console.get(f"/maker/drops/{maker_drop.id}").get_data(as_text=True)
    assert "Goes on sale when No. 7 sells out." in page
    assert "Sell it from the opening instead" in page


def test_a_batch_waits_only_for_an_earlier_batch_of_its_product_in_its_drop(app):
    drop = make_drop(state=DRAFT, opens_at=None)
    product = make_product(drop.maker)
    no7 = make_batch(product, drop, number=7)
    no8 = make_batch(product, drop, number=8)
    other = make_batch(make_product(drop.maker), drop, number=1)

    for batch, after in ((no7, no8), (no8, other), (no8, no8)):
        with pytest.raises(InvalidInput, match="earlier batch of the same product"):
            drops.line_up(drop, batch.id, after.id, actor=audit.CLI, now=BEFORE_DROP)


def test_lining_up_is_refused_once_the_drop_has_opened(app):
    no7, no8 = _seven_and_eight()
    with pytest.raises(EditNotAllowed, match="once the drop has opened"):
        drops.line_up(no7.drop, no8.id, None, actor=audit.CLI, now=AT_DROP)


def test_a_batch_leaving_the_drop_takes_its_line_up_with_it(app):
    drop = make_drop(state=DRAFT, opens_at=None)
    product = make_product(drop.maker)
    no7 = make_batch(product, drop, number=7)
    no8 = make_batch(product, drop, number=8)
    drops.line_up(drop, no8.id, no7.id, actor=audit.CLI, now=BEFORE_DROP)
    db.session.commit()

    details = drops.DropDetails(title=drop.title, batch_ids=[no8.id])
    drops.update_drop(drop, details, actor=audit.CLI, now=BEFORE_DROP)
    db.session.commit()

    assert db.session.scalar(select(Batch.follows_batch_id).where(Batch.id == no8.id)) is None

"""The edition ledger (issue 18, items 1 and 2), on SQLite and PostgreSQL: ``shop ledger
--check`` proves every batch's counters from its orders and units after every kind of history
and names each mismatch in a corrupted database; the public ledger shows the edition, every
change to it and the state of every number, and nothing about buyers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, select, text, update

from shop import clock, inventory, ledger, products, refunds
from shop.errors import EditNotAllowed
from shop.extensions import db
from shop.models import Allotment, Batch, LedgerCheck, Unit
from shop.models.order import EXPIRED
from testkit import databases, factories
from tests.support.stripe import live_batch, paid_order, stripe_settings


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


def _details(batch: Batch, **changes) -> products.BatchDetails:
    values = {
        name: getattr(batch, name)
        for name in (
            "number",
            "edition_size",
            "price",
            "currency",
            "per_customer_limit",
            "unit_label",
            "unit_singular",
            "summary",
            "story",
            "origin_place",
            "produced_on",
            "inputs",
            "process",
        )
    }
    return products.BatchDetails(**{**values, **changes})


@pytest.fixture
def history(app, emulator):
    """A batch of 10 (limit 4) with every kind of history: paid, refunded whole, refunded by
    unit, expired, re-held and paid, still held; then its edition grown to 12, with a reason."""
    maker = factories.make_maker()
    batch = live_batch(
        drop=factories.make_drop(maker, opens_at=clock.now() - timedelta(hours=1), closes_at=None),
        edition_size=10,
        limit=4,
        price=9500,
    )
    batch.product.maker_id = maker.id
    now = clock.now()
    paid_order(emulator, batch, factories.make_customer(), 2)
    whole = paid_order(emulator, batch, factories.make_customer(), 1)
    refunds.refund_order(whole, actor=maker, now=now)
    partly = paid_order(emulator, batch, factories.make_customer(), 3)
    refunds.refund_units(partly, [partly.units[0].serial], actor=maker, now=now)
    lapsed = inventory.hold(batch.id, 1, customer=factories.make_customer(), now=now)
    inventory.release(lapsed, EXPIRED, now=now)
    late = inventory.hold(batch.id, 1, customer=factories.make_customer(), now=now)
    inventory.release(late, EXPIRED, now=now)
    inventory.rehold(late, now=now)
    inventory.confirm(late, now=now, payment_intent_id="pi_late", customer_email=None)
    inventory.hold(batch.id, 2, customer=factories.make_customer(), now=now)
    products.update_batch(
        batch,
        _details(batch, edition_size=12, edition_reason="Two more casks turned out sound."),
        actor=maker,
        now=now,
    )
    db.session.commit()
    return batch


def test_every_kind_of_history_reconciles(app, history):
    results = ledger.check(db.session.connection())

    [result] = [r for r in results if r.batch_id == history.id]
    assert result.problems == []
    assert (result.edition_size, result.sold, result.held, result.retired) == (12, 7, 2, 2)
    assert result.line().startswith("ok ")


def test_the_cli_prints_a_line_per_batch_keeps_the_result_and_exits_0(app, runner, history):
    outcome = runner.invoke(args=["shop", "ledger", "--check"])

    assert outcome.exit_code == 0, outcome.output
    assert "ok        " in outcome.output and "Batch No." in outcome.output
    assert "did not reconcile" in outcome.output
    kept = db.session.scalar(select(LedgerCheck))
    assert (kept.batches, kept.mismatches) == (1, 0)


@pytest.mark.parametrize(
    ("corrupt", "said"),
    [
        (lambda b: update(Batch).where(Batch.id == b.id).values(held=Batch.held + 1), "held 3 != "),
        (lambda b: update(Batch).where(Batch.id == b.id).values(sold=Batch.sold - 1), "sold 6 != "),
        (
            lambda b: delete(Unit).where(Unit.batch_id == b.id, Unit.serial == 4),
            "missing 4",
        ),
        (
            lambda b: update(Unit).where(Unit.batch_id == b.id, Unit.serial == 5).values(serial=9),
            "unexpected 9",
        ),
        (
            lambda b: (
                update(Allotment)
                .where(Allotment.batch_id == b.id)
                .values(units=Allotment.units + 1)
            ),
            "allotment",
        ),
    ],
    ids=["held counter", "sold counter", "missing unit", "moved serial", "allotment"],
)
def test_a_corrupted_database_fails_the_check_naming_the_batch_and_numbers(
    app, runner, history, corrupt, said
):
    db.session.execute(corrupt(history))
    db.session.commit()

    outcome = runner.invoke(args=["shop", "ledger", "--check"])

    assert outcome.exit_code == 1
    [line] = [line for line in outcome.output.splitlines() if line.startswith("MISMATCH")]
    assert f"Batch No. {history.number} (id {history.id})" in line and said in line
    assert db.session.scalar(select(LedgerCheck)).mismatches == 1


def test_a_duplicated_serial_is_caught_where_the_schema_is_forced_to_allow_one(
    postgresql_url, emulator
):
    """The UNIQUE (batch, serial) constraint makes a duplicate impossible; drop it inside a
    transaction that is rolled back, and the check still names it."""
    app = databases.make_app(postgresql_url, **stripe_settings(emulator))
    with app.app_context():
        try:
            batch = live_batch(edition_size=5, limit=5)
            order = inventory.hold(batch.id, 2, customer=factories.make_customer(), now=clock.now())
            inventory.confirm(
                order, now=clock.now(), payment_intent_id="pi_dup", customer_email=None
            )
            db.session.commit()
            batch_id = batch.id
            with db.engine.connect() as connection, connection.begin() as transaction:
                connection.execute(
                    text("ALTER TABLE units DROP CONSTRAINT uq_units_batch_id_serial")
                )
                connection.execute(
                    update(Unit).where(Unit.batch_id == batch_id, Unit.serial == 2).values(serial=1)
                )
                found = ledger.violations(connection, batch_id)
                transaction.rollback()
            assert any("missing 2" in problem and "unexpected 1" in problem for problem in found)
        finally:
            db.session.rollback()
            databases.empty_all_tables()
            db.session.remove()
            db.engine.dispose()


def test_the_worker_checks_daily_and_the_console_shows_the_result(app, history):
    from shop import worker
    from tests.support.console import browser

    now = clock.now()
    maker_id = history.product.maker_id
    first = worker.run_pass(now, jobs=("ledger",))
    again = worker.run_pass(now + timedelta(hours=1), jobs=("ledger",))
    next_day = worker.run_pass(now + timedelta(days=1, minutes=1), jobs=("ledger",))

    assert first.ok and any("1 batches checked, 0 did not" in line for line in first.lines)
    assert again.lines == []
    assert next_day.lines
    from shop.models import User

    page = browser(app, db.session.get(User, maker_id)).get("/maker/").get_data(as_text=True)
    assert "Ledger reconciled" in page


def test_a_looping_worker_runs_the_daily_check_without_being_asked(app, history):
    outcome = app.test_cli_runner().invoke(args=["shop", "worker", "--passes", "1"])

    assert outcome.exit_code == 0, outcome.output
    assert "1 batches checked, 0 did not reconcile" in outcome.output
    assert db.session.scalar(select(db.func.count()).select_from(LedgerCheck)) == 1


def test_the_public_ledger_shows_sizes_changes_and_every_number_but_no_buyer(app, client, history):
    page = client.get(f"/products/{history.product.slug}/batches/{history.number}/ledger")

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Two more casks turned out sound." in html
    assert html.count("Retired</span>") == 2
    assert "Held now</dt><dd>2" in html and "Available</dt><dd>3" in html
    rows = [serial for serial in range(1, 8) if f'<td class="num">{serial}</td>' in html]
    assert rows == [1, 2, 3, 4, 5, 6, 7]
    for unit in db.session.scalars(select(Unit).where(Unit.batch_id == history.id)):
        assert unit.order.customer.email not in html
        assert unit.order.customer.first_name not in html
        assert unit.certificate_code not in html


def test_the_batch_page_links_to_its_ledger(client, history):
    page = client.get(f"/products/{history.product.slug}/batches/{history.number}")

    assert f"/products/{history.product.slug}/batches/{history.number}/ledger" in page.get_data(
        as_text=True
    )


def test_a_batch_that_has_not_gone_on_sale_has_no_ledger(app, client):
    batch = factories.make_batch(
        drop=factories.make_drop(opens_at=clock.now() + timedelta(days=2), closes_at=None)
    )
    db.session.commit()

    assert (
        client.get(f"/products/{batch.product.slug}/batches/{batch.number}/ledger").status_code
        == 404
    )
    assert client.get("/products/no-such/batches/1/ledger").status_code == 404


def test_growing_the_edition_after_opening_needs_a_reason(app, history):
    with pytest.raises(EditNotAllowed, match="Say why the edition changes from 12 to 14"):
        products.update_batch(
            history,
            _details(history, edition_size=14),
            actor=history.product.maker,
            now=clock.now(),
        )
    db.session.rollback()
    assert db.session.get(Batch, history.id).edition_size == 12

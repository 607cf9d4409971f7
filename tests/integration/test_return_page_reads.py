"""The page Stripe sends a paying customer back to (``checkout.success``) reads what it shows —
the order, its batch, product and drop, its units — in two statements, whether it fulfils the
payment first or the order is already paid (a reload), and reads nothing again after the
payment's commit but that page. On SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest

from shop.extensions import db
from testkit.factories import make_customer
from tests.support.clients import log_in
from tests.support.stripe import held_order, live_batch, stripe_settings
from tests.support.wire import recorded_statements


@pytest.fixture
def app_overrides(emulator):
    return stripe_settings(emulator)


def _tables_read(statements: list[str]) -> list[str]:
    return [re.search(r"\bFROM (\w+)", s)[1] for s in statements if s.startswith("SELECT")]


def test_the_return_page_reads_the_order_and_what_it_shows_in_two_statements(app, emulator):
    customer = make_customer()
    order = held_order(live_batch(edition_size=5), customer, 2)
    emulator.complete(order.checkout_session_id)
    db.session.commit()
    client = app.test_client()
    log_in(client, customer)
    path = f"/checkout/success?session_id={order.checkout_session_id}"
    db.session.remove()

    with recorded_statements(db.engine, commits=True) as paying:
        assert client.get(path).status_code == 200
    with recorded_statements(db.engine, commits=True) as reloading:
        reloaded = client.get(path)

    after_payment = paying[paying.index("COMMIT") + 1 :]
    assert _tables_read(after_payment) == ["orders", "units", "users"]  # and the nav's account
    assert _tables_read(reloading) == ["users", "orders", "units"]
    assert "Batch No." in reloaded.get_data(as_text=True)

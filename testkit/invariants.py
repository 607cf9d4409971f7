"""The inventory invariants (1 to 3 in docs/ARCHITECTURE.md), checked by SQL after a race.

``violations(connection, batch_id)`` returns a sentence per broken rule, so a test asserts
``== []`` and a failure reads like a bug report. Works on PostgreSQL and SQLite.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shop import ledger


def violations(connection: Connection, batch_id: int) -> list[str]:
    """Every broken inventory invariant of one batch (empty when all hold): the shop's own
    reconciliation (``shop.ledger``, what ``shop ledger --check`` runs), which counts refunded
    orders and retired units correctly, holds of every kind (crowd, draw, waitlist) alike, and
    the batch's waitlist (units set aside only while someone waits, ``waiting`` = its line)."""
    return ledger.violations(connection, batch_id)


def stock(connection: Connection, batch_id: int) -> tuple[int, int, int]:
    """(edition_size, sold, held) of a batch (``reserved``, set aside for its waitlist, is
    neither: see ``violations``)."""
    row = connection.execute(
        text("SELECT edition_size, sold, held FROM batches WHERE id = :batch_id"),
        {"batch_id": batch_id},
    ).one()
    return row.edition_size, row.sold, row.held


def held_across_drop_violations(connection: Connection, drop_id: int) -> list[str]:
    """Every broken rule of what accounts and networks hold across one drop: each
    ``held_by_account``/``held_by_network`` row counts exactly the units of its held orders and
    stays within its cap (empty when all hold)."""
    found: list[str] = []
    for table, key, column in (
        ("held_by_account", "customer_id", "o.customer_id"),
        ("held_by_network", "network", "o.client_net"),
    ):
        counted = {
            row.key: (row.units, row.cap)
            for row in connection.execute(
                text(f"SELECT {key} AS key, units, cap FROM {table} WHERE drop_id = :drop_id"),  # noqa: S608
                {"drop_id": drop_id},
            )
        }
        holding = {
            row.key: row.units
            for row in connection.execute(
                text(
                    f"SELECT {column} AS key, SUM(o.quantity) AS units FROM orders o "  # noqa: S608
                    "JOIN batches b ON b.id = o.batch_id WHERE b.drop_id = :drop_id "
                    f"AND o.state = 'held' AND {column} IS NOT NULL GROUP BY {column}"
                ),
                {"drop_id": drop_id},
            )
        }
        for holder in sorted(set(counted) | set(holding), key=str):
            units, cap = counted.get(holder, (0, None))
            if units != holding.get(holder, 0):
                found.append(f"{table} {holder}: {units} != held units {holding.get(holder, 0)}")
            if cap is not None and units > cap:
                found.append(f"{table} {holder}: {units} units over its cap {cap}")
    return found

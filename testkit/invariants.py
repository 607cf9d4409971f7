"""The inventory invariants (1 to 3 in docs/ARCHITECTURE.md), checked by SQL after a race.

``violations(connection, batch_id)`` returns a sentence per broken rule, so a test asserts
``== []`` and a failure reads like a bug report. Works on PostgreSQL and SQLite.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection


def violations(connection: Connection, batch_id: int) -> list[str]:
    """Every broken inventory invariant of one batch (empty when all hold)."""
    found: list[str] = []
    params = {"batch_id": batch_id}
    batch = (
        connection.execute(
            text(
                "SELECT edition_size, sold, held, per_customer_limit FROM batches "
                "WHERE id = :batch_id"
            ),
            params,
        )
        .mappings()
        .one()
    )
    size, sold, held, limit = (
        batch["edition_size"],
        batch["sold"],
        batch["held"],
        batch["per_customer_limit"],
    )
    if sold < 0 or held < 0:
        found.append(f"negative stock: sold={sold} held={held}")
    if sold + held > size:
        found.append(f"oversold: sold {sold} + held {held} > edition size {size}")

    orders = connection.execute(
        text(
            "SELECT state, COALESCE(SUM(quantity), 0) AS units, COUNT(*) AS n FROM orders "
            "WHERE batch_id = :batch_id GROUP BY state"
        ),
        params,
    ).all()
    by_state = {row.state: row.units for row in orders}
    if held != by_state.get("held", 0):
        found.append(f"held {held} != units of held orders {by_state.get('held', 0)}")
    if sold != by_state.get("paid", 0):
        found.append(f"sold {sold} != units of paid orders {by_state.get('paid', 0)}")

    serials = sorted(
        connection.execute(
            text("SELECT serial FROM units WHERE batch_id = :batch_id"), params
        ).scalars()
    )
    if serials != list(range(1, sold + 1)):
        found.append(f"serials are not 1..{sold} without gap or duplicate: {serials}")
    paid_orders_without_units = connection.execute(
        text(
            "SELECT o.id, o.quantity, COUNT(u.id) AS n FROM orders o "
            "LEFT JOIN units u ON u.order_id = o.id "
            "WHERE o.batch_id = :batch_id AND o.state = 'paid' "
            "GROUP BY o.id, o.quantity HAVING COUNT(u.id) != o.quantity"
        ),
        params,
    ).all()
    for row in paid_orders_without_units:
        found.append(f"paid order {row.id} of {row.quantity} has {row.n} units")

    allotted = {
        row.customer_id: row.units
        for row in connection.execute(
            text("SELECT customer_id, units FROM allotments WHERE batch_id = :batch_id"), params
        )
    }
    owned = {
        row.customer_id: row.units
        for row in connection.execute(
            text(
                "SELECT customer_id, SUM(quantity) AS units FROM orders "
                "WHERE batch_id = :batch_id AND state IN ('held', 'paid') GROUP BY customer_id"
            ),
            params,
        )
    }
    for customer_id in sorted(set(allotted) | set(owned)):
        units, holding = allotted.get(customer_id, 0), owned.get(customer_id, 0)
        if units != holding:
            found.append(f"customer {customer_id}: allotment {units} != held+paid units {holding}")
        if holding > limit:
            found.append(f"customer {customer_id} has {holding} units, over the limit {limit}")
    return found


def stock(connection: Connection, batch_id: int) -> tuple[int, int, int]:
    """(edition_size, sold, held) of a batch."""
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

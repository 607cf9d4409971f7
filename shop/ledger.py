"""The edition ledger: what a batch's counters say, proved from its orders and units.

``violations(connection, batch_id)`` reads one batch and returns a sentence per broken rule:

- no oversell: ``sold + held + reserved <= edition_size``, none negative;
- ``held`` = the units of its held orders, whatever their kind (crowd hold, draw win, waitlist
  offer: one kind of hold in the inventory), and each order's kind is a known one;
- the waitlist: ``waiting`` = the places still waiting in line; units are set aside
  (``reserved``) only while someone waits; one active place per customer; an offer is a
  waitlist hold of its place's customer;
- ``sold`` = its numbered units = the units of its paid orders plus the retired ones (a refunded
  order keeps its units sold and retired; a refund by unit retires units of a paid order);
- serials 1..sold without gap or duplicate; a paid or refunded order has exactly its units;
- each customer's allotment = the units of their held, paid and refunded orders (a refund
  never gives a limit back), within the batch's limit.

``check(connection)`` does it for every batch: ``flask --app wsgi shop ledger --check`` prints
one line per batch and exits non-zero on any mismatch; the worker runs it daily and keeps the
result (:class:`~shop.models.LedgerCheck`), which the maker console shows. Plain SQL on a
connection, so tests and benchmarks run the same checks after a race. PostgreSQL and SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from shop.extensions import db
from shop.models import Batch, EditionChange, LedgerCheck, Order, Unit
from shop.models.order import HELD, KINDS, PAID, REFUNDED, WAITLIST
from shop.models.waitlist import ACTIVE, BOUGHT, LAPSED, OFFERED, WAITING

CHECK_EVERY = timedelta(days=1)

# Paid (or once paid, then refunded) orders whose units are not exactly their quantity.
_ORDERS_WITHOUT_THEIR_UNITS = f"""
    SELECT o.id, o.quantity, COUNT(u.id) AS n FROM orders o
    LEFT JOIN units u ON u.order_id = o.id
    WHERE o.batch_id = :batch_id AND o.state IN ('{PAID}', '{REFUNDED}') AND o.paid_at IS NOT NULL
    GROUP BY o.id, o.quantity HAVING COUNT(u.id) != o.quantity
"""  # noqa: S608  # nosec B608 - state constants only

# What counts against a customer's limit: held and paid units, and paid ones later refunded
# (a refund never gives a limit back; a hold released unpaid returned its units).
_OWNED_BY_CUSTOMER = f"""
    SELECT customer_id, SUM(quantity) AS units FROM orders
    WHERE batch_id = :batch_id
      AND (state IN ('{HELD}', '{PAID}') OR (state = '{REFUNDED}' AND paid_at IS NOT NULL))
    GROUP BY customer_id
"""  # noqa: S608  # nosec B608 - state constants only


@dataclass
class BatchCheck:
    batch_id: int
    name: str
    edition_size: int
    sold: int
    held: int
    retired: int
    problems: list[str] = field(default_factory=list)
    reserved: int = 0  # set aside for the batch's waitlist
    waiting: int = 0  # places in its line

    def line(self) -> str:
        facts = (
            f"edition {self.edition_size}, sold {self.sold} ({self.retired} retired), "
            f"held {self.held}"
        )
        if self.waiting:
            facts += f", {self.waiting} waiting in line ({self.reserved} set aside)"
        if not self.problems:
            return f"ok        {self.name}: {facts}"
        return f"MISMATCH  {self.name}: " + "; ".join(self.problems)


def violations(connection: Connection, batch_id: int) -> list[str]:
    """Every broken rule of one batch (empty when its counters are proved by its orders)."""
    return _check_batch(connection, batch_id).problems


def _check_batch(connection: Connection, batch_id: int) -> BatchCheck:
    params = {"batch_id": batch_id}
    batch = (
        connection.execute(
            text(
                "SELECT b.edition_size, b.sold, b.held, b.reserved, b.waiting, "
                "b.per_customer_limit, b.number, p.name "
                "FROM batches b JOIN products p ON p.id = b.product_id "
                "WHERE b.id = :batch_id"
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
    reserved, waiting = batch["reserved"], batch["waiting"]
    found: list[str] = []
    if sold < 0 or held < 0 or reserved < 0:
        found.append(f"negative stock: sold={sold} held={held} reserved={reserved}")
    if sold + held + reserved > size:
        found.append(
            f"oversold: sold {sold} + held {held} + reserved {reserved} > edition size {size}"
        )
    found.extend(_waitlist_problems(connection, params, reserved=reserved, waiting=waiting))

    by_state = {
        row.state: row.units
        for row in connection.execute(
            text(
                "SELECT state, COALESCE(SUM(quantity), 0) AS units FROM orders "
                "WHERE batch_id = :batch_id GROUP BY state"
            ),
            params,
        )
    }
    if held != by_state.get(HELD, 0):
        found.append(f"held {held} != units of held orders {by_state.get(HELD, 0)}")

    units = connection.execute(
        text(
            "SELECT u.serial, u.refunded_at IS NOT NULL AS unit_refunded, o.state "
            "FROM units u JOIN orders o ON o.id = u.order_id WHERE u.batch_id = :batch_id"
        ),
        params,
    ).all()
    retired = sum(1 for unit in units if unit.unit_refunded or unit.state == REFUNDED)
    valid = len(units) - retired
    if sold != len(units):
        found.append(f"sold {sold} != numbered units {len(units)}")
    expected_valid = by_state.get(PAID, 0) - sum(
        1 for unit in units if unit.unit_refunded and unit.state == PAID
    )
    if valid != expected_valid:
        found.append(f"{valid} valid units != units of paid orders not refunded {expected_valid}")
    serials = sorted(unit.serial for unit in units)
    if serials != list(range(1, len(units) + 1)) or len(units) != sold:
        missing = sorted(set(range(1, sold + 1)) - set(serials))
        extra = sorted({s for s in serials if serials.count(s) > 1 or not 1 <= s <= sold})
        found.append(
            f"serials are not 1..{sold} without gap or duplicate"
            + (f": missing {_short(missing)}" if missing else "")
            + (f"; unexpected {_short(extra)}" if extra else "")
        )
    for row in connection.execute(text(_ORDERS_WITHOUT_THEIR_UNITS), params):
        found.append(f"order {row.id} of {row.quantity} has {row.n} units")

    allotted = {
        row.customer_id: row.units
        for row in connection.execute(
            text("SELECT customer_id, units FROM allotments WHERE batch_id = :batch_id"), params
        )
    }
    owned = {
        row.customer_id: row.units for row in connection.execute(text(_OWNED_BY_CUSTOMER), params)
    }
    for customer_id in sorted(set(allotted) | set(owned)):
        units_allotted, holding = allotted.get(customer_id, 0), owned.get(customer_id, 0)
        if units_allotted != holding:
            found.append(
                f"customer {customer_id}: allotment {units_allotted} != "
                f"held + paid + refunded units {holding}"
            )
        if holding > limit:
            found.append(f"customer {customer_id} has {holding} units, over the limit {limit}")
    name = f"{batch['name']}, Batch No. {batch['number']} (id {batch_id})"
    return BatchCheck(batch_id, name, size, sold, held, retired, found, reserved, waiting)


# Orders of an unknown kind, and offers that are not their place's customer's waitlist hold.
_BAD_KINDS = f"""
    SELECT o.id, o.kind FROM orders o WHERE o.batch_id = :batch_id AND o.kind NOT IN {KINDS!r}
"""  # noqa: S608  # nosec B608 - constants only
_BAD_OFFERS = f"""
    SELECT p.id, p.state, o.kind, o.state AS order_state FROM waitlist_places p
    JOIN orders o ON o.id = p.order_id
    WHERE p.batch_id = :batch_id AND p.state IN ('{OFFERED}', '{BOUGHT}', '{LAPSED}')
      AND (o.kind != '{WAITLIST}' OR o.customer_id != p.customer_id OR o.batch_id != p.batch_id)
"""  # noqa: S608  # nosec B608 - constants only
_LINE = f"""
    SELECT COUNT(*) FILTER (WHERE state = '{WAITING}') AS waiting,
           COUNT(*) FILTER (WHERE state IN {ACTIVE!r}) - COUNT(DISTINCT CASE
               WHEN state IN {ACTIVE!r} THEN customer_id END) AS doubles
    FROM waitlist_places WHERE batch_id = :batch_id
"""  # noqa: S608  # nosec B608 - constants only


def _waitlist_problems(
    connection: Connection, params: dict, *, reserved: int, waiting: int
) -> list[str]:
    found = []
    line = connection.execute(text(_LINE), params).one()
    if waiting != line.waiting:
        found.append(f"waiting {waiting} != places waiting in line {line.waiting}")
    if reserved > 0 and waiting <= 0:
        found.append(f"{reserved} units set aside for a waitlist nobody waits in")
    if line.doubles:
        found.append(f"{line.doubles} customers have two active places in line")
    for row in connection.execute(text(_BAD_KINDS), params):
        found.append(f"order {row.id} is of an unknown kind {row.kind!r}")
    for row in connection.execute(text(_BAD_OFFERS), params):
        found.append(
            f"place {row.id} ({row.state}) has a {row.kind} order in state {row.order_state}"
        )
    return found


def _short(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    return shown + (f" … ({len(numbers)} in all)" if len(numbers) > 10 else "")


def check(connection: Connection) -> list[BatchCheck]:
    """Every batch, checked."""
    ids = connection.execute(text("SELECT id FROM batches ORDER BY id")).scalars().all()
    return [_check_batch(connection, batch_id) for batch_id in ids]


def record(results: list[BatchCheck], *, now: datetime) -> LedgerCheck:
    """Keep a check's outcome for the console (the caller commits)."""
    mismatches = [result.line() for result in results if result.problems]
    entry = LedgerCheck(
        checked_at=now,
        batches=len(results),
        mismatches=len(mismatches),
        report="\n".join(mismatches),
    )
    db.session.add(entry)
    return entry


def latest() -> LedgerCheck | None:
    return db.session.scalar(select(LedgerCheck).order_by(LedgerCheck.checked_at.desc()).limit(1))


def run_if_due(now: datetime) -> LedgerCheck | None:
    """The worker's daily check: run and record it when the last one is a day old (or none)."""
    last = latest()
    if last is not None and last.checked_at > now - CHECK_EVERY:
        return None
    results = check(db.session.connection())
    entry = record(results, now=now)
    db.session.commit()
    return entry


# --- the public ledger of one batch --------------------------------------------------------

LINES_PER_PAGE = 500
SOLD, RETIRED = "sold", "retired"


@dataclass(frozen=True)
class SerialLine:
    serial: int
    state: str  # SOLD or RETIRED
    since: datetime  # numbered, or retired


@dataclass(frozen=True)
class PublicLedger:
    """What anyone may know about an edition: sizes, counts and every number's state — nothing
    about who bought it."""

    batch: Batch
    changes: list[EditionChange]
    retired: int
    lines: list[SerialLine]
    page: int
    pages: int

    @property
    def available(self) -> int:
        return max(0, self.batch.remaining)

    @property
    def first_size(self) -> int:
        return self.changes[0].from_size if self.changes else self.batch.edition_size


def public_ledger(batch: Batch, *, page: int = 1) -> PublicLedger:
    """The batch's ledger, ``LINES_PER_PAGE`` numbers a page (two queries and a count)."""
    changes = list(
        db.session.scalars(
            select(EditionChange)
            .where(EditionChange.batch_id == batch.id)
            .order_by(EditionChange.changed_at, EditionChange.id)
        )
    )
    retired = (
        db.session.scalar(
            select(func.count())
            .select_from(Unit)
            .join(Order, Order.id == Unit.order_id)
            .where(Unit.batch_id == batch.id)
            .where((Unit.refunded_at.is_not(None)) | (Order.state == REFUNDED))
        )
        or 0
    )
    pages = max(1, -(-batch.sold // LINES_PER_PAGE))
    page = min(max(1, page), pages)
    rows = db.session.execute(
        select(Unit.serial, Unit.created_at, Unit.refunded_at, Order.state, Order.refunded_at)
        .join(Order, Order.id == Unit.order_id)
        .where(Unit.batch_id == batch.id)
        .order_by(Unit.serial)
        .offset((page - 1) * LINES_PER_PAGE)
        .limit(LINES_PER_PAGE)
    ).all()
    lines = [
        SerialLine(serial, RETIRED, unit_refunded or order_refunded or numbered)
        if unit_refunded or state == REFUNDED
        else SerialLine(serial, SOLD, numbered)
        for serial, numbered, unit_refunded, state, order_refunded in rows
    ]
    return PublicLedger(batch, changes, retired, lines, page, pages)

"""The rules of a hold, written once as SQL.

This is the one place in the shop where conditional SQL is written by hand, because it was
measured to matter (docs/PERFORMANCE.md): on PostgreSQL the whole hold is ONE statement sent
straight to the driver (:data:`PG_HOLD_DRIVER`), so a buy request costs one round trip and the
hot batch row is locked for that statement only. SQLite has no data-modifying CTEs, so
``inventory._hold_stepwise`` runs the same fragments below one by one inside its write-locked
transaction. Either way the rules are these fragments; nothing restates them.

Everywhere else, compare-and-set updates are SQLAlchemy Core (``update(Order).where(...)``).
Parameters are ``:name``; :func:`statement` binds the time parameters through the aware-UTC
column type for SQLAlchemy, and :data:`PG_HOLD_DRIVER` is the same text with PostgreSQL's ``$n``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Date, bindparam, text
from sqlalchemy.sql.elements import TextClause

from shop.models.drop import OPEN, SALE, SCHEDULED
from shop.models.order import CROWD, DRAW, EXPIRED, HELD, KINDS, WAITLIST
from shop.models.types import UTCDateTime

_TIME_PARAMS = ("now", "hold_expires_at", "lapse_since")
_DATE_PARAMS = ("birth_date",)


@dataclass(frozen=True)
class Outcome:
    """What one hold attempt found (:data:`PG_HOLD`'s columns, in order; SQLite's steps give the
    same): the buyer, the batch's terms, and an order or why not."""

    signed_in: bool
    found: bool
    lim: int | None
    remaining: int | None
    live: bool
    age_ok: bool  # old enough for the batch (or it has no minimum age)
    ships_ok: bool  # the destination is on the batch's list (or it has none)
    cooling_ok: bool  # fewer of the account's holds lapsed lately than make it cool off
    account_ok: bool  # within the cap on units one account holds across the drop
    network_ok: bool  # within the cap on units held from one network across the drop
    units: int | None  # the allotment after this hold; None when none was taken
    order_id: int | None


UNLIMITED = 2**31 - 1  # the largest INTEGER the database holds


def or_unlimited(setting: int) -> int:
    """A cap from the settings; 0 turns it off."""
    return setting if setting > 0 else UNLIMITED


# A drop is live: its maker put it on sale (scheduled or open) first come, first served (a draw
# drop's units go only to its winners), the operator has not suspended its maker, and ``now``
# is inside its window.
# ``Drop.is_live`` is the same rule in Python; tests/integration/test_liveness_rule.py pins them.
LIVE_DROP = f"""
    d.state IN ('{SCHEDULED}', '{OPEN}') AND d.mode = '{SALE}' AND NOT d.suspended
    AND d.opens_at IS NOT NULL AND d.opens_at <= :now
    AND (d.closes_at IS NULL OR d.closes_at > :now)
"""

# Who is buying: the account, if the session token the buyer presents is still its current one
# (a logout elsewhere or a password change rotates it).
BUYER = "SELECT id FROM users WHERE id = :customer_id AND session_token = :session_token"

# Who may buy the batch: a buyer old enough (``:age``, whole years on the shop's UTC date,
# NULL when no date of birth was given) and, for a batch that ships only to listed countries,
# a destination on its list (``:ship_country``; ``ships_to`` is "DE,FR,GB", so the country is
# on it exactly when replacing ",XX," in ",DE,FR,GB," changes the text; REPLACE is in both
# databases, and LIKE's ``%`` would clash with the driver's placeholders).
AGE_OK = "(b.minimum_age IS NULL OR COALESCE(CAST(:age AS INTEGER), -1) >= b.minimum_age)"
SHIPS_OK = """(b.ships_to = '' OR REPLACE(',' || b.ships_to || ',',
                                      ',' || COALESCE(CAST(:ship_country AS TEXT), '-') || ',', '')
                              <> ',' || b.ships_to || ',')"""

# The batch is on sale: it is lined up behind no batch, or the batch it follows has nothing
# left to sell (sold + held + reserved = edition; units set aside for its waitlist are not
# the crowd's). Read with the terms, so a batch goes on sale the moment
# the one before sells out, with no job; a unit of that one freed later is sold before this
# one's next. ``Batch.waiting_for`` is the same rule for pages.
ON_SALE = """(b.follows_batch_id IS NULL OR EXISTS (
    SELECT 1 FROM batches ahead WHERE ahead.id = b.follows_batch_id
                                  AND ahead.sold + ahead.held + ahead.reserved
                                      >= ahead.edition_size))"""

# What a hold needs to know of the batch, read in the hold's own statement or write-locked
# transaction: no earlier read can go stale.
TERMS = f"""
    SELECT b.drop_id, b.per_customer_limit AS lim,
           b.edition_size - b.sold - b.held - b.reserved AS remaining,
           {AGE_OK} AS age_ok, {SHIPS_OK} AS ships_ok, {ON_SALE} AS on_sale
    FROM batches b WHERE b.id = :batch_id
"""  # noqa: S608  # nosec B608 - splices only this module's fragments

ALLOTTED = "SELECT units FROM allotments WHERE customer_id = :customer_id AND batch_id = :batch_id"


def at_least(value: str, floor: str) -> str:
    """The larger of two SQL numbers (SQLite has no GREATEST)."""
    return f"(CASE WHEN {value} > {floor} THEN {value} ELSE {floor} END)"


# The caps across a drop (SECURITY.md, "Hoarding"): an account may hold at most :account_cap
# units at once, and everyone on one client network (:network, a keyed hash; NULL when the
# address is not a public one) at most :network_cap, across all of the drop's batches; never
# less than the batch's own per-customer limit ``lim``: a maker who allows ten means it.
def account_cap(lim: str) -> str:
    return at_least("CAST(:account_cap AS INTEGER)", lim)


def network_cap(lim: str) -> str:
    return at_least("CAST(:network_cap AS INTEGER)", lim)


# Holds of this account that lapsed (ran out unpaid: the sweeper released them as expired; a
# cancelled hold is not a lapse) since :lapse_since; the partial index ix_orders_lapsed reads them.
LAPSED = (
    f"SELECT COUNT(*) FROM orders WHERE customer_id = :customer_id AND state = '{EXPIRED}' "  # noqa: S608  # nosec B608 - a constant
    "AND released_at > :lapse_since"
)


def holder_terms(*, drop: str, lim: str) -> str:
    """Whether this holder may take :quantity more units of drop ``drop`` now, as three columns:
    ``cooling_ok`` (fewer than :lapse_limit lapsed holds since :lapse_since), ``account_ok`` and
    ``network_ok`` (the units held across the drop stay within the caps). Read from a snapshot
    they only refuse early; the held-by rows' CHECK decides under races."""
    return f"""
        ({LAPSED}) < CAST(:lapse_limit AS INTEGER) AS cooling_ok,
        COALESCE((SELECT units FROM held_by_account
                  WHERE drop_id = {drop} AND customer_id = :customer_id), 0)
            + :quantity <= {account_cap(lim)} AS account_ok,
        COALESCE((SELECT units FROM held_by_network
                  WHERE drop_id = {drop} AND network = CAST(:network AS TEXT)), 0)
            + :quantity <= {network_cap(lim)} AS network_ok
    """  # noqa: S608  # nosec B608 - splices only this module's fragments


def take_held(table: str, key: str, rows: str, *, cap: str = "EXCLUDED.cap") -> str:
    """What the account (``held_by_account``, key ``customer_id``) or the network
    (``held_by_network``, key ``network``) holds across the drop grows by the quantity, the cap
    checked recorded with it. Unconditional: the snapshot already refused a hold over the cap,
    and when racing holds carry the units over it anyway, the CHECK ``units <= cap`` fails the
    whole statement, so nothing at all is held."""
    return f"""
        INSERT INTO {table} (drop_id, {key}, units, cap)
        {rows}
        ON CONFLICT (drop_id, {key}) DO UPDATE
            SET units = {table}.units + EXCLUDED.units, cap = {cap}
        RETURNING units
    """  # noqa: S608  # nosec B608 - splices only this module's fragments


def take_allotment(rows: str, *, limit: str) -> str:
    """The per-customer limit: the (customer, batch) allotment grows by the quantity only while
    it stays within ``limit``; RETURNING nothing means the limit refused it."""
    return f"""
        INSERT INTO allotments (customer_id, batch_id, units)
        {rows}
        ON CONFLICT (customer_id, batch_id) DO UPDATE
            SET units = allotments.units + EXCLUDED.units
            WHERE allotments.units + EXCLUDED.units <= {limit}
        RETURNING units
    """  # noqa: S608  # nosec B608 - splices only this module's fragments


# No oversell: held stock grows only while sold + held stays within the edition — and the
# crowd never takes the units set aside for the waitlist (``reserved``): a release that set
# them aside and a crowd hold meet on this row's lock, so the hold sees either the units still
# held or set aside, never free.
TAKE_STOCK = (
    "UPDATE batches SET held = held + :quantity "
    "WHERE id = :batch_id AND sold + held + reserved + :quantity <= edition_size"
)
# A waitlist's offer (``inventory.hold_for``) holds units set aside for the waitlist instead.
TAKE_RESERVED = (
    "UPDATE batches SET held = held + :quantity, reserved = reserved - :quantity "
    "WHERE id = :batch_id AND reserved >= :quantity"
)


def new_order(*, price: str, currency: str, source: str, kind: str = CROWD) -> str:
    """The held order, its price and currency copied from the batch at hold time. ``source`` is
    ``"VALUES ({values})"`` or ``"SELECT {values} FROM …"``; ``kind`` one of ``KINDS``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of hold {kind!r}")
    values = (
        f":public_id, :customer_id, :batch_id, :quantity, {price}, "
        f"CAST({price} AS BIGINT) * :quantity, "  # BIGINT: price x quantity may pass 2**31
        f"{currency}, '{HELD}', '{kind}', :hold_expires_at, 0, :now, :birth_date, "
        ":ship_country, CAST(:network AS TEXT)"
    )
    return f"""
        INSERT INTO orders (public_id, customer_id, batch_id, quantity, unit_price, amount,
                            currency, state, kind, hold_expires_at, checkout_attempt,
                            created_at, birth_date, ship_country, client_net)
        {source.format(values=values)}
        RETURNING id
    """  # nosec B608 - splices only this module's fragments and a known kind


# The steps taken one by one (SQLite's hold; a personal hold, ``inventory.hold_for``, on both
# databases): the allotment from the parameters, the order from the batch's price as read.
ALLOT_ONE = take_allotment("VALUES (:customer_id, :batch_id, :quantity)", limit=":limit")
GIVE_STOCK_BACK = "UPDATE batches SET held = held - :quantity WHERE id = :batch_id"
GIVE_RESERVED_BACK = (
    "UPDATE batches SET held = held - :quantity, reserved = reserved + :quantity "
    "WHERE id = :batch_id"
)
# Where a personal hold's units come from, by kind, and how a refused one gives them back.
PERSONAL_STOCK = {
    DRAW: (TAKE_STOCK, GIVE_STOCK_BACK),
    WAITLIST: (TAKE_RESERVED, GIVE_RESERVED_BACK),
}


def order_from_values(kind: str = CROWD) -> str:
    return new_order(
        price=":unit_price", currency=":currency", source="VALUES ({values})", kind=kind
    )


_PG_ALLOT = take_allotment(
    "SELECT buyer.id, :batch_id, :quantity FROM buyer, live, terms t "
    "WHERE :quantity <= t.lim AND :quantity <= t.remaining",
    limit="(SELECT lim FROM terms)",
)
_PG_HELD_BY_ACCOUNT = take_held(
    "held_by_account",
    "customer_id",
    f"SELECT t.drop_id, :customer_id, :quantity, {account_cap('t.lim')} FROM allot, terms t",  # noqa: S608  # nosec B608 - fragments
)
_PG_HELD_BY_NETWORK = take_held(
    "held_by_network",
    "network",
    f"SELECT t.drop_id, CAST(:network AS TEXT), :quantity, {network_cap('t.lim')} "  # noqa: S608  # nosec B608 - fragments
    "FROM account, terms t WHERE CAST(:network AS TEXT) IS NOT NULL",
)
_PG_NEW_ORDER = new_order(price="price", currency="currency", source="SELECT {values} FROM stock")

# The whole hold on PostgreSQL: one statement, one round trip, so it can commit on its own
# (``database.committed``) and no client round trip ever happens while the batch row is
# locked. First the statement's own snapshot is read without any lock (``seen``): when it
# already shows a refusal — not signed in, quantity over the limit, drop not live, a buyer the
# batch may not go to, an account cooling off or a cap across the drop reached, too few left,
# the customer's allotment full — the statement refuses from it and locks nothing, so the crowd
# that arrives after the sell-out never queues on the batch row (refusing a moment early is the
# same answer as arriving a moment earlier; nothing is ever granted from the snapshot).
# Otherwise the batch row is locked (FOR UPDATE returns its latest version), so the stock it
# shows is the stock the UPDATE finds: the allotment is taken exactly when the stock is, and a
# refusal touches nothing. Stock and allotment change only when the buyer is who they say, the
# drop is live (its row share-locked, so a close that commits first is seen) and the quantity
# is within the limit and the stock; the conditional UPDATE and upsert decide. What the account
# and the network hold across the drop grows with them (account row, then network row: every
# writer locks them in that order, after the batch row); a race past a cap fails the statement
# on their CHECK, so it takes nothing.
PG_HOLD = f"""
    WITH buyer AS ({BUYER}
    ), seen AS (
        SELECT t.*,
               t.on_sale AND EXISTS (SELECT 1 FROM drops d WHERE d.id = t.drop_id AND {LIVE_DROP})
               AS live,
               {holder_terms(drop="t.drop_id", lim="t.lim")}
        FROM ({TERMS}) AS t
    ), terms AS ({TERMS}
        AND EXISTS (SELECT 1 FROM buyer) AND EXISTS (
            SELECT 1 FROM seen WHERE seen.live AND :quantity <= seen.lim
                               AND seen.age_ok AND seen.ships_ok
                               AND seen.cooling_ok AND seen.account_ok AND seen.network_ok
                               AND :quantity <= seen.remaining
                               AND NOT EXISTS ({ALLOTTED} AND units + :quantity > seen.lim))
        FOR UPDATE
    ), live AS (
        SELECT d.id FROM drops d JOIN terms t ON d.id = t.drop_id WHERE t.on_sale AND {LIVE_DROP}
        FOR SHARE OF d
    ), allot AS ({_PG_ALLOT}
    ), account AS ({_PG_HELD_BY_ACCOUNT}
    ), network AS ({_PG_HELD_BY_NETWORK}
    ), stock AS ({TAKE_STOCK} AND EXISTS (SELECT 1 FROM allot) RETURNING price, currency
    ), new_order AS ({_PG_NEW_ORDER})
    SELECT EXISTS (SELECT 1 FROM buyer) AS signed_in, s.lim IS NOT NULL AS found,
           COALESCE(t.lim, s.lim), COALESCE(t.remaining, s.remaining),
           CASE WHEN t.lim IS NULL THEN s.live ELSE EXISTS (SELECT 1 FROM live) END AS live,
           COALESCE(s.age_ok, false), COALESCE(s.ships_ok, false),
           COALESCE(s.cooling_ok, false), COALESCE(s.account_ok, false),
           COALESCE(s.network_ok, false),
           (SELECT units FROM allot) AS units, (SELECT id FROM new_order) AS order_id
    FROM (SELECT 1) AS one LEFT JOIN seen s ON true LEFT JOIN terms t ON true
"""  # noqa: S608  # nosec B608 - the f-string only splices in the constants above

# The same statement with PostgreSQL's own placeholders (``$1``, in the order of PG_HOLD_NAMES),
# which the hot path hands to psycopg's RawCursor without SQLAlchemy: psycopg keeps what it
# makes of a ``%(name)s`` statement only for statements under 4 KB, and parsed this one (6 KB)
# again on every buy. ``::`` casts are left alone.
_PARAM = re.compile(r"(?<!:):([a-z_]+)")
PG_HOLD_NAMES = tuple(dict.fromkeys(_PARAM.findall(PG_HOLD)))
PG_HOLD_DRIVER = _PARAM.sub(lambda m: f"${PG_HOLD_NAMES.index(m[1]) + 1}", PG_HOLD)


def driver_values(values: dict) -> list:
    """The hold's named values in PG_HOLD_DRIVER's order."""
    return [values[name] for name in PG_HOLD_NAMES]


def statement(sql: str) -> TextClause:
    """One of the fragments above as a SQLAlchemy statement; its time parameters go through the
    aware-UTC column type, so SQLite compares them in the same text form the ORM stores."""
    times = [name for name in _TIME_PARAMS if f":{name}" in sql]
    dates = [name for name in _DATE_PARAMS if f":{name}" in sql]
    return text(sql).bindparams(
        *(bindparam(name, type_=UTCDateTime()) for name in times),
        *(bindparam(name, type_=Date()) for name in dates),
    )

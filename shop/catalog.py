"""Read-side queries for the storefront and the customer's account pages.

Nothing here changes stock or orders. "Sold out in …" is derived from the drop's ``opens_at`` and
the last ``paid_at`` of the batch's paid orders, never stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.orm import Session, aliased, joinedload, selectinload

from shop import database
from shop.extensions import db
from shop.models import Allotment, Batch, Drop, Order, Product, Unit, User
from shop.models.drop import CLOSED, DRAFT
from shop.models.order import HELD, PAID, REFUNDED
from shop.models.types import UTCDateTime
from shop.models.waitlist import WaitlistPlace, is_active

if TYPE_CHECKING:
    from shop.inventory import Buyer

# Public ids and certificate codes are secrets.token_urlsafe; slugs are short words. Anything
# else (NUL bytes, megabyte strings) cannot name a row and is not worth a database round trip.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_SLUG = 160
_SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")
MAX_ID = 2**31 - 1  # integer primary keys; a larger number in a URL names nothing
PAST_ON_HOME = 12  # the most recent past drops; older ones stay reachable by their address


def _plausible_slug(slug: str) -> bool:
    return 0 < len(slug) <= _MAX_SLUG and "\x00" not in slug


@dataclass
class HomeListing:
    live: list[Drop] = field(default_factory=list)
    upcoming: list[Drop] = field(default_factory=list)
    past: list[Drop] = field(default_factory=list)
    # batch id → how long it took to sell out, for batches that did
    sold_out_in: dict[int, timedelta] = field(default_factory=dict)


def _batch_options():
    """A drop with its maker, batches, products and images, joined into the drop's own
    statement: the pages a flash crowd reloads (home, drop, a sold-out answer) read them in one.
    Results need ``.unique()``."""
    return (
        joinedload(Drop.maker),
        joinedload(Drop.batches).joinedload(Batch.product),
        joinedload(Drop.batches).joinedload(Batch.images),
    )


def home_listing(now: datetime) -> HomeListing:
    """Public drops split into live, upcoming and past, each in the order a visitor wants."""
    drops = (
        db.session.scalars(select(Drop).where(Drop.state != DRAFT).options(*_batch_options()))
        .unique()
        .all()
    )
    listing = HomeListing()
    for drop in drops:
        phase = drop.phase(now)
        getattr(listing, "past" if phase == CLOSED else phase).append(drop)
    listing.live.sort(key=lambda d: (d.closes_at is None, d.closes_at or now))
    listing.upcoming.sort(key=lambda d: d.opens_at or now)
    listing.past.sort(key=lambda d: d.closed_at or d.closes_at or d.created_at, reverse=True)
    del listing.past[PAST_ON_HOME:]
    shown = [*listing.live, *listing.upcoming, *listing.past]
    listing.sold_out_in = sold_out_times([b for d in shown for b in d.batches])
    return listing


def sold_out_times(batches: list[Batch]) -> dict[int, timedelta]:
    """How long each sold-out batch took to sell: from its drop's opening to the payment of its
    last unit. THE rule for "sold out in": the storefront and the maker's live numbers
    (``reports.live_stats``) both call it, so a customer page and a maker page never disagree.

    A batch counts once every unit is sold (``sold >= edition_size``, nothing held). Its last
    unit was paid at the latest ``paid_at`` of its orders — refunded ones included, because a
    refund keeps the units sold.
    """
    done = [b for b in batches if b.sold >= b.edition_size and b.drop is not None]
    if not done:
        return {}
    last_paid = dict(
        db.session.execute(
            select(Order.batch_id, func.max(Order.paid_at))
            .where(Order.batch_id.in_([b.id for b in done]), Order.paid_at.is_not(None))
            .group_by(Order.batch_id)
        ).all()
    )
    times = {}
    for batch in done:
        opened, paid = batch.drop.opens_at, last_paid.get(batch.id)
        if opened is not None and paid is not None and paid >= opened:
            times[batch.id] = paid - opened
    return times


def public_drop(slug: str) -> Drop | None:
    """A drop visitors may see (anything but a draft), with its batches, images and maker."""
    if not _plausible_slug(slug):
        return None
    return _one_public_drop(_PUBLIC_DROP_BY_SLUG, {"slug": slug})


def detached_public_drop(slug: str) -> Drop | None:
    """``public_drop`` read in a session of its own and detached from it, with everything its
    page reads loaded (the next batch each one follows too): objects a process can keep and
    render from while the drop is unchanged (``page_cache.snapshot``). Read-only."""
    if not _plausible_slug(slug):
        return None
    with Session(db.engine, expire_on_commit=False) as session:
        drop = session.scalars(_PUBLIC_DROP_BY_SLUG, {"slug": slug}).unique().first()
        if drop is not None:
            for batch in drop.batches:
                batch.follows, batch.drop  # noqa: B018 - loaded now, read after the session ends
        # Closed without a rollback: that would expire what was just loaded.
    return drop


def public_drop_of_batch(batch_id: int) -> Drop | None:
    """The public drop a batch was released in (None if it never was), as ``public_drop``."""
    if not 1 <= batch_id <= MAX_ID:
        return None
    return _one_public_drop(_PUBLIC_DROP_OF_BATCH, {"batch_id": batch_id})


def _public_drop_where(condition):
    """One drop page's worth in ONE statement (``_batch_options``)."""
    return select(Drop).where(condition, Drop.state != DRAFT).options(*_batch_options())


# Built once: the page a flash crowd reloads, and every sold-out answer, run these.
_PUBLIC_DROP_BY_SLUG = _public_drop_where(Drop.slug == bindparam("slug"))
_PUBLIC_DROP_OF_BATCH = _public_drop_where(
    Drop.id == select(Batch.drop_id).where(Batch.id == bindparam("batch_id")).scalar_subquery()
)


def _one_public_drop(statement, params: dict) -> Drop | None:
    return db.session.scalars(statement, params).unique().first()


def batch_by_number(product_slug: str, number: int) -> Batch | None:
    """A released batch: it belongs to a drop that is not a draft."""
    if not _plausible_slug(product_slug) or not 1 <= number <= MAX_ID:
        return None
    return db.session.scalar(
        select(Batch)
        .join(Product)
        .join(Drop, Batch.drop_id == Drop.id)
        .where(Product.slug == product_slug, Batch.number == number, Drop.state != DRAFT)
        .options(
            selectinload(Batch.product).selectinload(Product.maker),
            selectinload(Batch.drop),
            selectinload(Batch.images),
        )
    )


def sibling_batches(batch: Batch) -> list[Batch]:
    """The product's other released batches, newest number first."""
    return list(
        db.session.scalars(
            select(Batch)
            .join(Drop, Batch.drop_id == Drop.id)
            .where(Batch.product_id == batch.product_id, Batch.id != batch.id, Drop.state != DRAFT)
            .order_by(Batch.number.desc())
            .options(selectinload(Batch.drop), selectinload(Batch.images))
        )
    )


@dataclass(frozen=True)
class BatchNumbers:
    id: int
    edition_size: int
    sold: int
    held: int  # held for buyers, and set aside for the waitlist: not the crowd's either

    @property
    def remaining(self) -> int:
        return max(0, self.edition_size - self.sold - self.held)


@dataclass(frozen=True)
class DropNumbers:
    """A public drop's content version, window and live numbers (``drop_numbers``)."""

    id: int
    slug: str
    version: int
    state: str
    opens_at: datetime | None
    closes_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    batches: list[BatchNumbers]


# Built once: the page cache reads it for every public drop at most once a second.
_DROP_NUMBERS = (
    select(
        Drop.id,
        Drop.content_version,
        Drop.state,
        Drop.opens_at,
        Drop.closes_at,
        Drop.closed_at,
        Drop.created_at,
        Batch.id,
        Batch.edition_size,
        Batch.sold,
        Batch.held + Batch.reserved,
    )
    .outerjoin(Batch, Batch.drop_id == Drop.id)
    .where(Drop.slug == bindparam("slug"), Drop.state != DRAFT)
    .order_by(Batch.id)
)


def drop_numbers(slug: str) -> DropNumbers | None:
    """What is left of each batch of a public drop, with the drop's content version and window,
    in ONE query. The page cache (``page_cache.drop_state``) shares the answer for a second
    between every visitor."""
    if not _plausible_slug(slug):
        return None
    rows = db.session.execute(_DROP_NUMBERS, {"slug": slug}).all()
    if not rows:
        return None
    drop_id, version, state, opens_at, closes_at, closed_at, created_at = rows[0][:7]
    batches = [BatchNumbers(*row[7:]) for row in rows if row[7] is not None]
    return DropNumbers(
        drop_id, slug, version, state, opens_at, closes_at, closed_at, created_at, batches
    )


@dataclass(frozen=True)
class SoldOutFacts:
    """What the sold-out answer to a buy says (``sold_out_facts``): the batch, its drop, whether
    it is sold for good, the batch lined up behind it and whether this customer is in its line."""

    batch_id: int
    number: int
    product_name: str
    drop_slug: str
    drop_title: str
    edition_size: int
    sold: int
    left: int  # what the crowd may take now: units may have come back since the refusal
    per_customer_limit: int
    waiting: int
    unit_label: str  # plural: "bottles"
    unit_singular: str  # one: "bottle"
    next_id: int | None  # the batch that goes on sale once this one sells out
    next_number: int | None
    next_left: int | None
    in_line: bool  # the customer has a place in this batch's waitlist (waiting or offered)

    @property
    def for_good(self) -> bool:
        """Every unit is paid for: none can come back, so there is no waitlist."""
        return self.sold >= self.edition_size

    def seen_by(self, *, in_line: bool) -> SoldOutFacts:
        """These facts as a customer who is (or is not) in the batch's line sees them: the
        same object when that is already what they say, as for most of a crowd."""
        return self if self.in_line == in_line else replace(self, in_line=in_line)


def _has_place(batch_id, customer_id):
    """The customer has a place in the batch's waitlist (waiting or offered)."""
    return exists().where(
        WaitlistPlace.batch_id == batch_id,
        WaitlistPlace.customer_id == customer_id,
        is_active(),
    )


def _sold_out_facts_statement():
    """One row: the batch, its product and public drop, the batch that follows it (the earliest
    lined up behind it in its drop: a correlated subquery, on the drop's index) and whether the
    customer has a place in its line. Built once: the crowd arriving after the sell-out runs it."""
    after = aliased(Batch)
    lined_up = aliased(Batch)
    next_id = (
        select(lined_up.id)
        .where(lined_up.drop_id == Batch.drop_id, lined_up.follows_batch_id == Batch.id)
        .order_by(lined_up.number)
        .limit(1)
        .correlate(Batch)
        .scalar_subquery()
    )
    in_line = _has_place(Batch.id, bindparam("customer_id")).correlate(Batch)
    return (
        select(
            Batch.id,
            Batch.number,
            Product.name,
            Drop.slug,
            Drop.title,
            Batch.edition_size,
            Batch.sold,
            Batch.edition_size - Batch.sold - Batch.held - Batch.reserved,
            Batch.per_customer_limit,
            Batch.waiting,
            Batch.unit_label,
            Batch.unit_singular,
            after.id,
            after.number,
            after.edition_size - after.sold - after.held - after.reserved,
            in_line,
        )
        .join(Product, Product.id == Batch.product_id)
        .join(Drop, Drop.id == Batch.drop_id)
        .outerjoin(after, after.id == next_id)
        .where(Batch.id == bindparam("batch_id"), Drop.state != DRAFT)
    )


_SOLD_OUT_FACTS = _sold_out_facts_statement()


# The account the session claims, if its token is current, and whether it is in a batch's line.
_CLAIMED_IN_LINE = select(
    _has_place(bindparam("batch_id"), User.id).correlate(User).label("in_line")
).where(User.id == bindparam("id"), User.session_token == bindparam("token"))


def claimed_in_line(batch_id: int, claim: Buyer) -> bool | None:
    """Whether the account a session claims has a place in the batch's waitlist, in ONE small
    query that checks the claim as the hold statement would; None when the claim is stale
    (its token was rotated: logged out everywhere, a new password). One round trip on
    PostgreSQL, outside the request's transaction (``database.read_row``): a crowd's refusals
    send it after the last unit went."""
    row = database.read_row(
        _CLAIMED_IN_LINE, {"batch_id": batch_id, "id": claim.id, "token": claim.session_token}
    )
    return None if row is None else bool(row[0])


def sold_out_facts(batch_id: int, customer_id: int | None = None) -> SoldOutFacts | None:
    """What the sold-out page says about a released batch, in ONE query; None for a batch that
    does not exist or was never released (a 404, as for the drop page)."""
    if not 1 <= batch_id <= MAX_ID:
        return None
    row = db.session.execute(
        _SOLD_OUT_FACTS, {"batch_id": batch_id, "customer_id": customer_id}
    ).first()
    return None if row is None else SoldOutFacts(*row[:15], in_line=bool(row[15]))


def certificate(code: str) -> Unit | None:
    """The unit behind a certificate code: units of paid orders, and retired ones (refunded,
    by unit or with their whole order), whose page says so."""
    if not _TOKEN.fullmatch(code or ""):
        return None
    return db.session.scalar(
        select(Unit)
        .join(Order, Unit.order_id == Order.id)
        .where(Unit.certificate_code == code, Order.state.in_((PAID, REFUNDED)))
        .options(
            selectinload(Unit.order).selectinload(Order.customer),
            selectinload(Unit.batch).selectinload(Batch.product).selectinload(Product.maker),
            selectinload(Unit.batch).selectinload(Batch.drop),
            selectinload(Unit.batch).selectinload(Batch.images),
        )
    )


HOLDS_SHOWN = 3  # running holds listed one by one on a batch's buy panel; more are summed up


@dataclass
class RunningHolds:
    """A customer's running holds on one batch: the first few to run out, and all of them
    counted, so a page stays short however many holds a generous limit allows."""

    shown: list[Order]
    count: int
    units: int

    @property
    def more(self) -> int:
        return self.count - len(self.shown)

    @property
    def more_units(self) -> int:
        return self.units - sum(order.quantity for order in self.shown)


def _live_holds_statement():
    """This customer's unexpired holds on some batches: the ``shown`` first to run out on each,
    with the number and units of all of them on that batch. Built once (a page-view query)."""
    by_batch = {"partition_by": Order.batch_id}
    ranked = (
        select(
            Order.id,
            func.row_number()
            .over(**by_batch, order_by=(Order.hold_expires_at, Order.id))
            .label("rank"),
            func.count().over(**by_batch).label("count"),
            func.sum(Order.quantity).over(**by_batch).label("units"),
        )
        .where(
            Order.customer_id == bindparam("customer_id"),
            Order.batch_id.in_(bindparam("batch_ids", expanding=True)),
            Order.state == HELD,
            Order.hold_expires_at > bindparam("now", type_=UTCDateTime()),
        )
        .subquery()
    )
    return (
        select(Order, ranked.c.count, ranked.c.units)
        .join(ranked, Order.id == ranked.c.id)
        .where(ranked.c.rank <= bindparam("shown"))
        .order_by(Order.hold_expires_at, Order.id)
    )


_LIVE_HOLDS = _live_holds_statement()


def live_holds(
    customer: User, batch_ids: list[int], now: datetime, *, shown: int = HOLDS_SHOWN
) -> dict[int, RunningHolds]:
    """This customer's holds on these batches that have not run out, by batch id: the ``shown``
    that run out first, and the number and units of all — one statement however many there are."""
    if not batch_ids:
        return {}
    rows = db.session.execute(
        _LIVE_HOLDS,
        {"customer_id": customer.id, "batch_ids": batch_ids, "now": now, "shown": shown},
    )
    holds: dict[int, RunningHolds] = {}
    for order, count, units in rows:
        running = holds.setdefault(order.batch_id, RunningHolds([], count, units))
        running.shown.append(order)
    return holds


def _order_options():
    return (
        selectinload(Order.batch).selectinload(Batch.product).selectinload(Product.maker),
        selectinload(Order.batch).selectinload(Batch.images),
        selectinload(Order.batch).selectinload(Batch.drop),
        selectinload(Order.units),
    )


def customer_orders(customer: User) -> list[Order]:
    """Every order of this customer, newest first."""
    return list(
        db.session.scalars(
            select(Order)
            .where(Order.customer_id == customer.id)
            .order_by(Order.created_at.desc(), Order.id.desc())
            .options(*_order_options())
        )
    )


# What the return page shows of an order besides its units, joined into the order's row.
_RETURN_PAGE = (
    joinedload(Order.batch).joinedload(Batch.product),
    joinedload(Order.batch).joinedload(Batch.drop),
)


def customer_order_for_session(customer: User, session_id: str) -> Order | None:
    """The customer's order paid through this Checkout Session, with its batch, product and drop
    in the same row (the return page shows them; a payment reads them for the receipt); None
    for anyone else's."""
    if not _SESSION_ID.fullmatch(session_id or ""):
        return None
    return db.session.scalar(
        select(Order)
        .where(Order.checkout_session_id == session_id, Order.customer_id == customer.id)
        .options(*_RETURN_PAGE)
    )


def order_for_return_page(order_id: int) -> Order:
    """The order as the return page shows it, read afresh after a payment committed: its
    batch, product and drop joined into one statement, its units in a second."""
    return db.session.scalars(
        select(Order)
        .where(Order.id == order_id)
        .options(*_RETURN_PAGE, selectinload(Order.units))
        .execution_options(populate_existing=True)
    ).one()


def customer_order(customer: User, public_id: str, *, details: bool = True) -> Order | None:
    """One of this customer's orders; None for an unknown id or someone else's order. With
    ``details`` its batch, product, images and units come along (the order page)."""
    if not _TOKEN.fullmatch(public_id or ""):
        return None
    statement = select(Order).where(Order.public_id == public_id, Order.customer_id == customer.id)
    return db.session.scalar(statement.options(*_order_options()) if details else statement)


# Built once: every drop page a signed-in customer sees runs it.
_ALLOTMENTS = select(Allotment.batch_id, Allotment.units).where(
    Allotment.customer_id == bindparam("customer_id"),
    Allotment.batch_id.in_(bindparam("batch_ids", expanding=True)),
)


def allowed_quantity(batch: Batch, customer: User | None) -> int:
    """How many more units this customer may hold now (for the quantity select)."""
    return allowed_quantities([batch], customer)[batch.id]


def taken_columns(count: int) -> list:
    """The signed-in account's units of ``count`` batches (bound as ``batch_0``…, see
    ``taken_params``) as columns of its own row, NULL for none: for ``auth.load_with``, the
    account and what it took in one statement."""
    return [
        select(Allotment.units)
        .where(Allotment.customer_id == User.id, Allotment.batch_id == bindparam(f"batch_{i}"))
        .scalar_subquery()
        for i in range(count)
    ]


def taken_params(batch_ids: list[int]) -> dict[str, int]:
    return {f"batch_{i}": batch_id for i, batch_id in enumerate(batch_ids)}


def taken_from(batch_ids: list[int], values: tuple) -> dict[int, int]:
    """``taken_units`` from the values of ``taken_columns``."""
    return {b: units for b, units in zip(batch_ids, values, strict=True) if units is not None}


def taken_units(batch_ids: list[int], customer: User | None) -> dict[int, int]:
    """Units of these batches the customer holds or has bought, by batch (one small query;
    none for a visitor who is not signed in)."""
    if customer is None or not customer.is_authenticated or not batch_ids:
        return {}
    return dict(
        db.session.execute(_ALLOTMENTS, {"customer_id": customer.id, "batch_ids": batch_ids}).all()
    )


def allowed_quantities(
    batches: list[Batch], customer: User | None, *, taken: dict[int, int] | None = None
) -> dict[int, int]:
    """``allowed_quantity`` for several batches in one query (a drop page under a crowd), or
    none when the caller has the customer's ``taken_units`` already."""
    if taken is None:
        taken = taken_units([b.id for b in batches], customer)
    return {
        batch.id: may_still_take(batch.per_customer_limit, taken.get(batch.id, 0), batch.remaining)
        for batch in batches
    }


def may_still_take(limit: int, taken: int, remaining: int) -> int:
    """Units a customer may still take of a batch: what their limit leaves, at most what is left."""
    return max(0, min(limit - taken, remaining))

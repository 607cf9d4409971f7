"""The waiting room: one place per account, handed out in arrival order, admitted as stock allows.

A drop's room is ``auto`` (it opens by itself once signed-in arrivals at the drop page pass
``SHOP_ROOM_AUTO_PER_SECOND`` over ten seconds), ``on`` or ``off`` (``Drop.waiting_room``, the
maker's choice). While it is open, a signed-in visitor of the live drop waits for a turn:

- **Places.** The first visit takes the next number (``INCR``) and keeps it in a sorted set
  keyed by account, so refreshing, more tabs or more devices find the same place. The place
  travels in a signed cookie bound to the account and the drop (:func:`issue_pass`).
- **Turns follow stock.** Each visit moves the line on, atomically, by at most what a token
  bucket of ``SHOP_ROOM_ADMIT_PER_SECOND`` allows and by at most the units still free (neither
  held nor sold) minus the visitors already called who have not held yet. So the room stops
  calling when every unit is held or sold, and calls as many as were freed when holds are
  released. A called visitor who has not held within ``SHOP_ROOM_TURN_SECONDS`` gives their
  slot to the next; their pass to buy lasts ``SHOP_ROOM_PASS_MINUTES``, after which a visit
  puts them at the back of the line.
- **Nobody waits for nothing.** Once every unit is sold for good, every waiting visitor's next
  visit is the sold-out answer; the queue page's script (``static/js/line.js``) tells them
  sooner, from the stock JSON's ``sold_out_for_good``.

With ``REDIS_URL`` the line lives in Redis (two Lua scripts, shared by every process, surviving
restarts); without it, in this process's memory (the embedded single-process default). Redis
trouble never stops a sale: the room is then treated as closed and a warning logged. The hold
statement stays the only authority on stock: a turn is permission to try, never a unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from shop import audit, claims, page_cache, room_store
from shop.catalog import SoldOutFacts
from shop.errors import InvalidInput
from shop.extensions import db
from shop.models import Drop
from shop.models.drop import ROOM_AUTO, ROOM_MODES, ROOM_OFF, ROOM_ON, SALE

Turn = room_store.Turn

COOKIE_PREFIX = "smallbatch_line_"
PLACE_HOURS = 12  # a place in line (and its cookie) is good for this long
USED_GRACE_MS = 2000  # a used turn's slot outlives the buy by this much (see turn_used)
MODE_NAMES = {ROOM_AUTO: "Automatic", ROOM_ON: "On", ROOM_OFF: "Off"}


@dataclass(frozen=True)
class Stock:
    free: int  # neither held nor sold: what the room may still call visitors for
    unsold: int  # not sold for good (free + held): 0 means nothing will ever come back

    @property
    def sold_out(self) -> bool:
        return self.unsold <= 0


@dataclass(frozen=True)
class PassCheck:
    """What a visitor's cookie says: nothing, a valid place (maybe admitted), or a bad one."""

    present: bool
    valid: bool
    admitted_until: int = 0


# --- settings --------------------------------------------------------------------------------


def admit_rate() -> float:
    return float(current_app.config["SHOP_ROOM_ADMIT_PER_SECOND"])


def _auto_threshold() -> int:
    return int(current_app.config["SHOP_ROOM_AUTO_PER_SECOND"]) * room_store.ARRIVAL_WINDOW


def _turn_ms() -> int:
    return int(current_app.config["SHOP_ROOM_TURN_SECONDS"]) * 1000


def _pass_ms() -> int:
    return int(current_app.config["SHOP_ROOM_PASS_MINUTES"]) * 60_000


def _burst() -> float:
    """How many turns may be handed out at once: one second's worth, at least one."""
    return max(1.0, admit_rate())


# --- the rules, for views ----------------------------------------------------------------------


def is_open(drop: Drop | RoomDrop, batch_ids: list[int], *, now_ms: int) -> bool:
    """Is ``drop``'s room open now? Counts this visit as an arrival for the automatic room,
    which opens (and stays open) once arrivals pass the threshold."""
    if drop.waiting_room == ROOM_OFF:
        return False
    return room_store.for_app().arrive(
        drop.id, batch_ids, mode=drop.waiting_room, threshold=_auto_threshold(), now_ms=now_ms
    )


def before_buy(
    batch_id: int, customer_id: int
) -> tuple[int | None, SoldOutFacts | None, bytes | None]:
    """What a buy must know before anything else, in one Redis round trip: the drop whose open
    room guards ``batch_id`` (or None), the batch's shared sold-out facts
    (``page_cache.nothing_left``, or None) and the buyer's mirrored claim (``claims.in_line``
    takes it; None when not mirrored)."""
    drop_id, (gone, mirrored) = room_store.for_app().room_for_batch(
        batch_id, also=(page_cache.nothing_left_key(batch_id), claims.key(customer_id))
    )
    return drop_id, page_cache.nothing_left(gone), mirrored


def visit(
    drop: RoomDrop, customer_id: int, stock: Stock, *, now_ms: int, requeue: bool
) -> Turn | None:
    """Count the visit as an arrival (``is_open``), then take (or find) the customer's place,
    move the line on as stock allows, and say where they stand — one step in the store.
    ``requeue`` sends them to the back first (their cookie was bad). None when the room is not
    open or the line cannot be reached: the visitor is then let through to the drop page."""
    if drop.waiting_room == ROOM_OFF:
        return None
    return room_store.for_app().visit(
        drop.id,
        customer_id,
        batch_ids=drop.batch_ids,
        mode=drop.waiting_room,
        threshold=_auto_threshold(),
        now_ms=now_ms,
        free=stock.free,
        rate=admit_rate(),
        burst=_burst(),
        turn_ms=_turn_ms(),
        pass_ms=_pass_ms(),
        requeue=requeue,
    )


def turn_used(drop_id: int, customer_id: int, *, now_ms: int) -> None:
    """A called visitor tries to buy: their slot ends ``USED_GRACE_MS`` from now, by when a
    hold they take is counted in the batch's ``held`` (a visit that read the stock just before
    the hold then cannot call someone for the same unit); a refused try frees it as well."""
    room_store.for_app().turn_used(drop_id, customer_id, until_ms=now_ms + USED_GRACE_MS)


def waiting(drop_id: int) -> int:
    return room_store.for_app().waiting(drop_id)


def stock_of(state: page_cache.DropState) -> Stock:
    """The drop's stock across its batches, from the shared state every reload reads (at most
    ``page_cache.STATE_SECONDS`` old, and dropped the moment a batch sells out for good). A
    number that old is safe here: a called visitor's slot outlives their buy by
    ``USED_GRACE_MS``, longer than the state can lag behind the hold they take."""
    free = unsold = 0
    for batch in state.batches:
        free += max(0, batch.edition_size - batch.sold - batch.held)
        unsold += max(0, batch.edition_size - batch.sold)
    return Stock(free=free, unsold=unsold)


@dataclass(frozen=True)
class RoomDrop:
    """What the line needs of a drop beside its numbers: kept per content version."""

    id: int
    slug: str
    title: str
    waiting_room: str
    batch_ids: list[int]
    sells: bool  # a sale (not a draw) whose maker is not suspended: live in its window

    def is_live(self, state: page_cache.DropState, now: datetime) -> bool:
        return self.sells and state.phase(now) == "live"


def room_drop(state: page_cache.DropState) -> RoomDrop:
    """The drop of ``state`` as the line shows it, read once per content version in this
    process (a maker's edit, a new room mode or the maker's suspension bumps the version)."""

    def load() -> RoomDrop:
        row = db.session.execute(
            select(Drop.title, Drop.waiting_room, Drop.mode, Drop.suspended).where(
                Drop.id == state.id
            )
        ).one()
        return RoomDrop(
            state.id,
            state.slug,
            row.title,
            row.waiting_room,
            [batch.id for batch in state.batches],
            sells=row.mode == SALE and not row.suspended,
        )

    return page_cache.kept_here(f"room:{state.slug}:{state.version}", load)


HOPELESS_REFRESH = 30  # seconds; shorter than a called visitor's turn (SHOP_ROOM_TURN_SECONDS)


def refresh_seconds(turn: Turn, stock: Stock) -> int:
    """How soon the queue page reloads: every 2 s for those who may be called within a couple
    of seconds, 5 s for those who may still get a unit, ``HOPELESS_REFRESH`` for those with
    more people ahead than units left. Those are most of a crowd's line, and they wait only for
    a hold someone gives back or for the sold-out news, which the page's script shows the
    moment the stock JSON says it: reloading them every 10 s made their reloads most of what
    the shop served while the crowd was still arriving."""
    callable_now = max(0, stock.free - turn.called)
    if turn.ahead < callable_now + admit_rate() * 2:
        return 2
    if turn.ahead < stock.unsold:
        return 5
    return HOPELESS_REFRESH


def wait_seconds(turn: Turn) -> int | None:
    """An honest estimate of the wait: the visitors ahead at the rate turns are handed out.
    None when it cannot be told (every unit is held and only lapsed holds will move the line)."""
    rate = admit_rate()
    if rate <= 0:
        return None
    return math.ceil((turn.ahead + 1) / rate)


def set_mode(drop: Drop, mode: str, *, actor: audit.Actor) -> None:
    """The maker's choice for the room; applied to the live line by :func:`apply_mode` after
    the commit. Turning it off ends the line; ``auto`` keeps a room already open (a crowd may
    be in it) and otherwise waits for a crowd."""
    if mode not in ROOM_MODES:
        raise InvalidInput("Choose automatic, on or off for the waiting room.")
    if drop.waiting_room == mode:
        return
    drop.waiting_room = mode
    page_cache.content_changed(drop_ids=[drop.id])  # pages keep the drop, room mode and all
    audit.record(
        "drop.waiting_room",
        actor=actor,
        drop=drop,
        detail=f"waiting room {MODE_NAMES[mode].lower()}",
    )
    db.session.flush()


def apply_mode(drop: Drop) -> None:
    batch_ids = [batch.id for batch in drop.batches]
    if drop.waiting_room == ROOM_OFF:
        room_store.for_app().close(drop.id, batch_ids)
    elif drop.waiting_room == ROOM_ON:
        room_store.for_app().arrive(drop.id, batch_ids, mode=ROOM_ON, threshold=0, now_ms=0)


# --- the cookie ------------------------------------------------------------------------------


def cookie_name(drop_id: int) -> str:
    return f"{COOKIE_PREFIX}{drop_id}"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="smallbatch.line")


def issue_pass(drop_id: int, customer_id: int, turn: Turn) -> str:
    """The signed cookie value: this account's place in this drop's line, and how long its
    pass to buy runs once called."""
    return _serializer().dumps(
        {"d": drop_id, "u": customer_id, "p": turn.place, "a": turn.admitted_until}
    )


def read_pass(value: str | None, *, drop_id: int, customer_id: int, now_ms: int) -> PassCheck:
    """Check a cookie: signed by us, not older than PLACE_HOURS, for this drop and account.
    Anything else (forged, expired, someone else's) is ``valid=False``, never an error."""
    if not value:
        return PassCheck(present=False, valid=False)
    try:
        data = _serializer().loads(value, max_age=PLACE_HOURS * 3600)
    except (SignatureExpired, BadSignature):
        return PassCheck(present=True, valid=False)
    if (
        not isinstance(data, dict)
        or data.get("d") != drop_id
        or data.get("u") != customer_id
        or not isinstance(data.get("a"), int)
    ):
        return PassCheck(present=True, valid=False)
    admitted_until = data["a"] if data["a"] > now_ms else 0
    return PassCheck(present=True, valid=True, admitted_until=admitted_until)

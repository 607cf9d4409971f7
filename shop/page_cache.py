"""The drop pages' shared cache: what a crowd reloads, read once and shared by every process.

Kept in Redis when ``REDIS_URL`` is set (every app process shares it), else in this process's
memory (the embedded default runs one process):

- a drop's **state** — its content version, window and live numbers, read in one query and
  kept at most ``STATE_SECONDS``. The live stock JSON answers from it. Never an authority: the
  hold statement decides every sale.

``drops.content_version`` is the invalidation: ``content_changed`` bumps it in the same
transaction as the maker's edit and, once that commits, drops the cached state, so the very
next request reads the drop afresh (the one-second life is only the bound when that eviction is
lost, never the invalidation).
- a batch's **sold-out facts** (``catalog.SoldOutFacts`` but the customer's place in line),
  kept ``STATE_SECONDS`` in Redis (only there) once a buy found nothing left of it: the crowd
  that keeps pressing Buy after the last unit went is answered from them (``nothing_left``)
  without the hold statement. Units only come back by a release or a bigger edition, which
  drop them once they commit.
- a drop page's **renders**, keyed by ``page_key`` (the version, the phase, the minute and the
  numbers the page prints): the *shell* — the page with a ``slot`` wherever something is
  personal — and the whole page an anonymous visitor gets. Rendered once per key, whichever
  process asks first; nothing personal is ever in them.

And in each process, the drop itself as the renders need it (``snapshot``: detached ORM objects,
kept per key), so a warm signed-in page asks the database only for the visitor's own rows.
docs/ARCHITECTURE.md, "The drop page cache", tells the whole design.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import astuple, dataclass, fields
from datetime import datetime

import redis
from flask import current_app, has_app_context, request, session
from flask_login import AnonymousUserMixin
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from redis.exceptions import RedisError
from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session

from shop import auth, catalog, templating
from shop.catalog import BatchNumbers, SoldOutFacts
from shop.extensions import db
from shop.models import Batch, Drop
from shop.models.drop import drop_phase

log = logging.getLogger(__name__)

STATE_SECONDS = 1.0  # how old the live numbers (and the version a page is checked against) may be
PAGE_SECONDS = 300  # a render is keyed by its content; this only bounds what an old key keeps
SNAPSHOTS = 1024  # drops (by key) and pieces (by shape) each process keeps
REDIS_TIMEOUT = 0.25  # seconds: a slow Redis costs a render, never a stuck page
_EVICT = "page_cache.evict"  # Session.info key: slugs whose state goes once the edit commits
_EVICT_BATCHES = "page_cache.evict_batches"  # ...and batches whose sold-out facts go


# --- what is cached ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DropState(catalog.DropNumbers):
    """A public drop's numbers (``catalog.drop_numbers``) as read at ``read_at``."""

    read_at: datetime

    def phase(self, now: datetime) -> str:
        return drop_phase(self.state, self.opens_at, self.closes_at, now)

    def to_json(self) -> bytes:
        return json.dumps(
            [
                self.id,
                self.slug,
                self.version,
                self.state,
                *(_iso(at) for at in (self.opens_at, self.closes_at, self.closed_at)),
                self.created_at.isoformat(),
                [[b.id, b.edition_size, b.sold, b.held] for b in self.batches],
                self.read_at.isoformat(),
            ]
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> DropState:
        id_, slug, version, state, opens, closes, closed, created, batches, read_at = json.loads(
            raw
        )
        return cls(
            id_,
            slug,
            version,
            state,
            _at(opens),
            _at(closes),
            _at(closed),
            datetime.fromisoformat(created),
            [BatchNumbers(*b) for b in batches],
            datetime.fromisoformat(read_at),
        )


# --- reading ----------------------------------------------------------------------------------


def drop_state(slug: str, now: datetime, *, fresh: bool = False) -> DropState | None:
    """The drop's state from the shared cache, or read afresh (one query) when older than
    ``STATE_SECONDS`` or ``fresh`` is asked; None for no public drop of that slug."""
    store = _store()
    key = f"state:{slug}"
    found = None if fresh else store.get(key, DropState.from_json)
    if found is not None:
        return found
    found = catalog.drop_numbers(slug)
    if found is None:
        return None
    state = DropState(
        **{field.name: getattr(found, field.name) for field in fields(found)}, read_at=now
    )
    store.set(key, state, DropState.to_json, STATE_SECONDS)
    return state


def nothing_left_key(batch_id: int) -> str | None:
    """Where the batch's sold-out facts are shared (``nothing_left``): a Redis key, which the buy
    reads in one round trip with its room's gate (``waiting_room.before_buy``); None without a
    shared store — a process's own memory would not hear another process (the worker's sweep,
    say) give units back, and would refuse them for a second."""
    store = _store()
    return store.key(nothing_left_name(batch_id)) if store.shared else None


def nothing_left_name(batch_id: int) -> str:
    """The name the batch's sold-out facts are kept under in the shared store."""
    return f"gone:{batch_id}"


def nothing_left(raw: bytes | None) -> SoldOutFacts | None:
    """The batch's sold-out facts, as read at ``nothing_left_key``: there if a buy found nothing
    left of it within ``STATE_SECONDS`` and no unit has come back since (``in_line`` is not
    among them: it is the customer's). Never a grant: a miss only means the hold statement is
    asked."""
    return None if raw is None else _facts_from_json(raw)


def keep_nothing_left(facts: SoldOutFacts) -> None:
    """Share what a buy just found of a batch with nothing left (``nothing_left``)."""
    store = _store()
    if facts.left <= 0 and store.shared:
        store.set(nothing_left_name(facts.batch_id), facts, _facts_to_json, STATE_SECONDS)


def _facts_to_json(facts: SoldOutFacts) -> bytes:
    return json.dumps(astuple(facts.seen_by(in_line=False))).encode()


@functools.lru_cache(maxsize=256)
def _facts_from_json(raw: bytes) -> SoldOutFacts:
    """Kept per text: the crowd after the last unit reads the same few facts again and again,
    and the same object makes ``sold_out_shell``'s key cheap to find."""
    return SoldOutFacts(*json.loads(raw))


def page_key(state: DropState, phase: str, now: datetime) -> str:
    """What a drop page's shared part depends on: the content version, the phase, the minute
    (countdowns print minutes; a closed page prints none) and every number it prints."""
    minute = 0 if phase == "closed" else int(now.timestamp()) // 60
    parts = [str(state.id), str(state.version), state.state, phase, str(minute)]
    parts += [f"{b.id}:{b.edition_size}:{b.sold}:{b.held}" for b in state.batches]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=12).hexdigest()


def rendered(slug: str, variant: str, key: str, render: Callable[[], str]) -> str:
    """One render of a drop's page (``variant``: "shell", "anonymous", a queue page) for
    ``key``, shared by every process: rendered here only when no process has yet, and then
    kept in this process too (a key says everything the render depends on, so a copy is never
    stale), so a warm page costs no round trip for it."""
    name = f"page:{slug}:{variant}:{key}"

    def shared() -> str:
        store = _store()
        found = store.get(name, bytes.decode)
        if found is None:
            found = render()
            store.set(name, found, str.encode, PAGE_SECONDS)
        return found

    return kept_here(name, shared)


def snapshot(slug: str, key: str, load: Callable[[], object]):
    """The drop of ``slug`` as loaded for ``key`` (detached objects, read-only), kept in this
    process: a warm page does not read the drop again."""
    return kept_here(f"drop:{slug}:{key}", load)


def kept_here(name: Hashable, make: Callable[[], object]):
    """``make()`` kept in this process under ``name`` (which must say everything it depends
    on) for ``PAGE_SECONDS``; None is not kept."""
    extensions = current_app.extensions
    store = extensions.get("shop_page_snapshots")
    if store is None:
        store = extensions.setdefault("shop_page_snapshots", MemoryStore(limit=SNAPSHOTS))
    found = store.get(name)
    if found is None:
        found = make()
        if found is not None:
            store.set(name, found, None, PAGE_SECONDS)
    return found


# --- slots: the personal places in a shared render --------------------------------------------

_SLOT = re.compile(r"<!--slot-([0-9a-f]{16}):([A-Za-z0-9_-]+)-->")


def _slot_token() -> str:
    """Per secret key, so no visitor text (a story, a name) can pass for a slot."""
    config = current_app.config
    token = config.get("_SHOP_SLOT_TOKEN")
    if token is None:
        secret = str(config["SECRET_KEY"]).encode()
        token = config["_SHOP_SLOT_TOKEN"] = hashlib.sha256(b"page-slot:" + secret).hexdigest()[:16]
    return token


def slot(name: str) -> Markup:
    """A named place in a shared render, filled per request (``fill``); in a render of pieces,
    the mark that starts the piece of that name (``pieces``)."""
    return Markup(f"<!--slot-{_slot_token()}:{name}-->")  # noqa: S704  # nosec B704


def token_mark() -> str:
    """Stands for the visitor's CSRF token in pieces kept for many visitors (``kept_here``),
    replaced by their own on the way out."""
    return f"csrf-{_slot_token()}"


def account_pieces() -> dict[str, str]:
    """The nav and the flashes for a shell, drawn without reading the visitor's account: the
    nav is kept in this process per page and account links (``auth.nav_account``), with a mark
    where the visitor's CSRF token goes in (``filled`` puts it in)."""
    account = auth.nav_account()
    mark = token_mark()
    nav = kept_here(
        _nav_name(request.endpoint, account),
        lambda: templating.render_piece(
            "_account_nav.html",
            current_user=account or AnonymousUserMixin(),
            request=request,
            csrf_token=lambda: mark,
        ),
    )
    return {
        "nav": nav,
        "flashes": templating.render_piece("_flashes.html") if "_flashes" in session else "",
    }


def kept_nav(endpoint: str, account: auth.NavAccount) -> str | None:
    """The nav ``account_pieces`` keeps for ``endpoint``'s pages and ``account``'s links, if
    this process has drawn it (for an answer made outside a request, ``shop.fast_path``)."""
    return kept_here(_nav_name(endpoint, account), lambda: None)


def _nav_name(endpoint: str | None, account: auth.NavAccount | None) -> str:
    shape = "-" if account is None else f"{int(account.is_maker)}{int(account.is_admin)}"
    return f"nav:{endpoint}:{shape}"


def sold_out_shell(facts: SoldOutFacts, *, render: bool = True) -> str | None:
    """The sold-out answer to a buy (``storefront/sold_out.html``) as a ``shell``, kept in this
    process per set of facts: they are all it says of the batch and of the customer. With
    ``render=False`` only if kept (``shop.fast_path`` answers without a request)."""
    make = (lambda: shell("storefront/sold_out.html", facts=facts)) if render else lambda: None
    return kept_here(("sold-out", facts), make)


def shape(account, allowed: dict[int, int]) -> str:
    """What the pieces of a drop page depend on for a visitor with nothing of their own on it:
    their account's links (``auth.NavAccount``, None for nobody) and what they may buy of
    each batch (``catalog.allowed_quantities``)."""
    links = "-" if account is None else f"{int(account.is_maker)}{int(account.is_admin)}"
    return links + ":" + ",".join(f"{batch}={count}" for batch, count in sorted(allowed.items()))


def personal(page: str, token: str, now: datetime) -> str:
    """A drop page filled for a visitor (its ``slot("now")`` and ``token_mark()`` left in)
    with their CSRF token and the clock."""
    return page.replace(token_mark(), token).replace(slot("now"), templating.iso(now))


def shell(template: str, **context) -> str:
    """``template`` rendered as nobody for every visitor: a ``slot`` for the nav, flashes and
    clock (base.html), ``token_mark()`` for each CSRF token, and none of the context processors
    (Flask-Login's would read the visitor's account). Filled by ``filled_for_visitor``."""
    mark = token_mark()
    return templating.render_piece(
        template,
        slot=slot,
        current_user=AnonymousUserMixin(),
        csrf_token=lambda: mark,
        hold_minutes=current_app.config["SHOP_HOLD_MINUTES"],
        request=request,
        **context,
    )


def filled_for_visitor(shell: str, now: datetime, **own: str) -> str:
    """A shell rendered as nobody (``slot`` in its context, ``token_mark()`` for its CSRF
    tokens), filled with this visitor's ``own`` pieces, nav, flashes, clock and token."""
    return filled(shell, own | account_pieces(), now, generate_csrf)


def filled(shell: str, found: dict[str, str], now: datetime, token: Callable[[], str]) -> str:
    """``shell`` with the pieces ``found`` and the clock, every other slot empty, and the
    visitor's CSRF ``token()`` wherever a piece has its mark."""
    text = fill(shell, found | {"now": templating.iso(now)}, last=True)
    mark = token_mark()
    return text.replace(mark, token()) if mark in text else text


def pieces(text: str) -> dict[str, str]:
    """A render of marked pieces (``slot(name)`` before each) as ``{name: piece}``."""
    token = _slot_token()
    parts = _SLOT.split(text)
    found = {}
    for index in range(1, len(parts) - 2, 3):
        if parts[index] == token:
            found[parts[index + 1]] = parts[index + 2]
    return found


def fill(shell: str, found: dict[str, str], *, last: bool = False) -> str:
    """``shell`` with its slots named in ``found`` filled; with ``last``, any other slot empty."""
    token = _slot_token()

    def one(match: re.Match) -> str:
        if match.group(1) != token:
            return match.group(0)
        piece = found.get(match.group(2))
        if piece is None:
            return "" if last else match.group(0)
        return piece

    return _SLOT.sub(one, shell)


# --- invalidation -----------------------------------------------------------------------------


def content_changed(
    *,
    drop_ids: Iterable[int] = (),
    batch_ids: Iterable[int] = (),
    product_ids: Iterable[int] = (),
    maker_ids: Iterable[int] = (),
) -> None:
    """A maker (or the operator) changed what these drops' pages show: bump their
    ``content_version`` in the caller's transaction. Once it commits, their cached state goes,
    so the next request anywhere renders the new version (and so do the sold-out facts of the
    ``batch_ids`` named: an edition may have grown)."""
    drop_ids, batch_ids = [i for i in drop_ids if i], [i for i in batch_ids if i]
    product_ids, maker_ids = [i for i in product_ids if i], [i for i in maker_ids if i]
    conditions = []
    if drop_ids:
        conditions.append(Drop.id.in_(drop_ids))
    if batch_ids:
        conditions.append(Drop.id.in_(select(Batch.drop_id).where(Batch.id.in_(batch_ids))))
    if product_ids:
        conditions.append(
            Drop.id.in_(select(Batch.drop_id).where(Batch.product_id.in_(product_ids)))
        )
    if maker_ids:
        conditions.append(Drop.maker_id.in_(maker_ids))
    if not conditions:
        return
    db.session.info.setdefault(_EVICT_BATCHES, set()).update(batch_ids)  # an edition grown
    slugs = db.session.scalars(
        update(Drop)
        .where(or_(*conditions))
        .values(content_version=Drop.content_version + 1)
        .returning(Drop.slug)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.info.setdefault(_EVICT, set()).update(slugs)


def numbers_changed(*, batch_ids: Iterable[int]) -> None:
    """These batches' numbers changed in a way a visitor must not wait a second to learn (the
    last unit sold for good, or units given back): once the caller's transaction commits,
    their drops' cached state goes, so the line, the stock JSON and the page read the new
    numbers on the next request, and their sold-out facts go, so a buy asks the hold statement
    again. Holds do not call this: they are the crowd's hot path."""
    batch_ids = list(batch_ids)
    slugs = db.session.scalars(
        select(Drop.slug).join(Batch, Batch.drop_id == Drop.id).where(Batch.id.in_(batch_ids))
    ).all()
    db.session.info.setdefault(_EVICT, set()).update(slugs)
    db.session.info.setdefault(_EVICT_BATCHES, set()).update(batch_ids)


@event.listens_for(Session, "after_commit")
def _evict_after_commit(session: Session) -> None:
    slugs = session.info.pop(_EVICT, None) or ()
    batch_ids = session.info.pop(_EVICT_BATCHES, None) or ()
    keys = [f"state:{slug}" for slug in slugs] + [
        nothing_left_name(batch_id) for batch_id in batch_ids
    ]
    if keys and has_app_context():
        _store().delete(keys)


# --- the stores -------------------------------------------------------------------------------


class MemoryStore:
    """This process's memory: entries kept as objects, expiring, at most ``limit`` of them."""

    shared = False  # other processes neither see these entries nor evict them

    def __init__(self, limit: int = 4096) -> None:
        self._items: dict[Hashable, tuple[float, object]] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def get(self, key: Hashable, _decode=None):
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def set(self, key: Hashable, value, _encode, seconds: float) -> None:
        with self._lock:
            if len(self._items) >= self._limit:
                now = time.monotonic()
                self._items = {k: v for k, v in self._items.items() if v[0] >= now}
                if len(self._items) >= self._limit:
                    self._items.clear()
            self._items[key] = (time.monotonic() + seconds, value)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._items.pop(key, None)


class RedisStore:
    """Redis, shared by every app process. Any Redis error is a miss (logged), never a 500."""

    shared = True

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def key(self, name: str) -> str:
        """The Redis key an entry is kept under."""
        return self._prefix + name

    def get(self, key: str, decode):
        try:
            raw = self._client.get(self.key(key))
        except RedisError as error:
            log.warning("page cache: Redis read failed: %s", error)
            return None
        return None if raw is None else decode(raw)

    def set(self, key: str, value, encode, seconds: float) -> None:
        try:
            self._client.set(self.key(key), encode(value), px=int(seconds * 1000))
        except RedisError as error:
            log.warning("page cache: Redis write failed: %s", error)

    def delete(self, keys: list[str]) -> None:
        try:
            self._client.delete(*(self.key(key) for key in keys))
        except RedisError as error:
            log.warning("page cache: Redis eviction failed: %s", error)


def cached_state(app, slug: str) -> DropState | None:
    """The drop's state if the shared cache has it, else None — read without an app context
    and never from the database (``shop.fast_path``)."""
    return _store_of(app).get(f"state:{slug}", DropState.from_json)


def redis_prefix(key_prefix: str | None) -> str:
    """Where the page cache's keys live in Redis, under the app's ``RATELIMIT_KEY_PREFIX``."""
    return (key_prefix or "smallbatch") + "/page/"


def _store():
    return _store_of(current_app)


def _store_of(app):
    extensions = app.extensions
    store = extensions.get("shop_page_cache")
    if store is None:
        url = app.config.get("REDIS_URL")
        if url:
            client = redis.Redis.from_url(
                url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
            )
            store = RedisStore(client, redis_prefix(app.config.get("RATELIMIT_KEY_PREFIX")))
        else:
            store = MemoryStore()
        store = extensions.setdefault("shop_page_cache", store)
    return store


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None

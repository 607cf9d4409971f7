"""A session's claim as a crowd's refusals read it: mirrored in Redis, so that the sold-out
answer is one round trip.

A signed-in buyer's session claims an account and carries the session token it was issued
with; the claim holds while that token is still the account's (``auth.SessionClaim``; a logout
everywhere, a new password or a reset rotates it). The sold-out page also says whether the
buyer has a place in the batch's line. PostgreSQL answers both in one statement
(``catalog.claimed_in_line``) — a second round trip after Redis's, which a crowd arriving after
the last unit sent on every press of Buy. With Redis (``REDIS_URL``) on PostgreSQL each account
is also mirrored under ``<prefix>/claim/<id>`` as ``<version> <token digest> <batch ids>``: a
SHA-256 digest of its current token (never the token) and the batches in whose line it has an
active place. The buy reads the mirror in the same ``MGET`` as the batch's room and sold-out
facts (``waiting_room.before_buy``).

Kept true by writes, never by a timer alone:

- *Every commit that changes a claim refreshes its mirror after it.* A change is marked on the
  session (:func:`changed`): by the ORM when an account's ``session_token`` or a place's
  ``state`` is set, and by hand where a statement writes them in bulk (a reset, joining and
  leaving a line, settling offers). After the commit one statement reads each marked account
  again and writes it (``refresh``).
- *A read from before a change never replaces one from after it.* Each mirror carries the
  time PostgreSQL received the statement that read it (``statement_timestamp()``, in
  microseconds); the statement's snapshot is taken after that, so a read that missed a commit
  has a version before it, and the refresh sent after the commit one after it. A Lua script
  writes a mirror only over an older one, so a slow reader (one that read before a rotation
  and writes after it) cannot put back an old token.
- *A miss reads PostgreSQL as before*, with the same statement, and writes what it read.
- Mirrors lapse after ``MIRROR_SECONDS``. A write that fails (Redis unreachable) is logged;
  the mirror it should have replaced is then believed until it lapses — only by the sold-out
  answer, which sells and changes nothing: a hold still checks the token itself in
  PostgreSQL, and every other page asks PostgreSQL.

Without Redis, or on SQLite, nothing is mirrored and :func:`in_line` asks the database.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

import redis
from flask import current_app, has_app_context
from redis.exceptions import RedisError
from sqlalchemy import String, bindparam, cast, event, func, select
from sqlalchemy.orm import Session, object_session

from shop import catalog, database
from shop.extensions import db
from shop.models import User
from shop.models.waitlist import WaitlistPlace, is_active

if TYPE_CHECKING:
    from shop.auth import SessionClaim

log = logging.getLogger(__name__)

MIRROR_SECONDS = 600  # how long a mirror is believed without being written again
REDIS_TIMEOUT = 0.25  # seconds: a slow Redis costs a PostgreSQL read, never a stuck answer
_CHANGED = "shop.claims.changed"  # Session.info: accounts whose claims this transaction changed

# The newer of two reads wins, whichever is written last (ARGV: version, value, seconds).
_WRITE_NEWER = """
local kept = redis.call('GET', KEYS[1])
if kept then
  local version = tonumber(string.match(kept, '^%d+'))
  if version and version >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

# The accounts' current tokens and the batches in whose lines they have active places, with the
# time PostgreSQL received the statement (its version: a statement received after a commit sees
# it). One statement for any number of accounts (a refresh after a commit, a miss).
_LINES = (
    select(func.string_agg(cast(WaitlistPlace.batch_id, String), ","))
    .where(WaitlistPlace.customer_id == User.id, is_active())
    .correlate(User)
    .scalar_subquery()
)
_VERSION = func.floor(func.extract("epoch", func.statement_timestamp()) * 1_000_000)
_MIRRORS = select(User.id, User.session_token, _LINES, _VERSION).where(
    User.id.in_(bindparam("ids", expanding=True))
)
_MIRROR = select(User.session_token, _LINES, _VERSION).where(User.id == bindparam("id"))


def key(customer_id: int) -> str | None:
    """Where the account's claim is mirrored, for the buy's one ``MGET``; None when nothing is
    mirrored (no Redis, or SQLite)."""
    store = _store()
    return None if store is None else store.key(customer_id)


def in_line(batch_id: int, claim: SessionClaim, mirrored: bytes | None) -> bool | None:
    """Whether the account ``claim`` names has a place in the batch's line — None when the claim
    does not hold (its token was rotated). From ``mirrored`` (the value read at :func:`key`) when
    its digest is the claim's token's; else from PostgreSQL, whose answer is then mirrored."""
    lines = mirrored_lines(mirrored, claim.session_token)
    if lines is not None:
        return batch_id in lines
    store = _store()
    if store is None:
        return catalog.claimed_in_line(batch_id, claim)
    row = database.read_row(_MIRROR, {"id": claim.id})
    if row is None:
        return None
    token, lines, version = row
    if mirrored is None or _parsed(mirrored)[0] != _digest(token):
        store.write({claim.id: _mirror(token, lines, version)})
    if token is None or not hmac.compare_digest(token.encode(), claim.session_token.encode()):
        return None
    return batch_id in _batch_ids(lines)


def mirrored_lines(mirrored: bytes | None, token: str) -> frozenset[int] | None:
    """The batches in whose lines a mirror (read at :func:`key`) says the account has a place,
    if it is the mirror of an account whose token is ``token``; None otherwise (ask
    PostgreSQL)."""
    if mirrored is None:
        return None
    digest, lines = _parsed(mirrored)
    return lines if hmac.compare_digest(digest.encode(), _digest(token).encode()) else None


def changed(customer_id: int | None, session: Session | None = None) -> None:
    """Mark the account's claim as changed by this transaction: its mirror is written again
    after the commit."""
    if customer_id is not None:
        (session or db.session()).info.setdefault(_CHANGED, set()).add(customer_id)


def refresh(customer_ids: Iterable[int]) -> None:
    """Read the accounts' claims again (one statement) and write their mirrors. Logged, never
    raised, when Redis or PostgreSQL fails: the commit before it stands."""
    store = _store()
    ids = sorted(set(customer_ids))
    if store is None or not ids:
        return
    try:
        with db.engine.connect() as connection:
            rows = connection.execute(_MIRRORS, {"ids": ids}).all()
    except Exception:
        log.exception("claims: could not read %d accounts to mirror; forgetting them", len(ids))
        store.forget(ids)  # a missing mirror only means PostgreSQL is asked
        return
    store.write({id_: _mirror(token, lines, version) for id_, token, lines, version in rows})


@lru_cache(maxsize=4096)
def _parsed(raw: bytes) -> tuple[str, frozenset[int]]:
    """A mirror's token digest and batch ids (a crowd reads the same few values again); a value
    that is not a mirror matches no token."""
    try:
        _version, digest, lines = raw.decode().split(" ", 2)
        return digest, _batch_ids(lines)
    except ValueError:
        return "", frozenset()


def _batch_ids(lines: str | None) -> frozenset[int]:
    """The batch ids of a mirror's (or PostgreSQL's ``string_agg``'s) comma-separated list."""
    return frozenset(int(b) for b in (lines or "").split(",") if b)


@lru_cache(maxsize=4096)
def _digest(token: str | None) -> str:
    return hashlib.sha256(token.encode()).hexdigest() if token else "-"


def _mirror(token: str | None, lines: str | None, version) -> tuple[int, str]:
    """What PostgreSQL read of an account, as its mirror: the version and the value."""
    return int(version), f"{int(version)} {_digest(token)} {lines or ''}"


class RedisMirrors:
    """The mirrors in Redis, each account's under ``prefix`` + its id."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._write_newer = client.register_script(_WRITE_NEWER)

    def key(self, customer_id: int) -> str:
        return self.prefix + str(customer_id)

    def write(self, mirrors: dict[int, tuple[int, str]]) -> None:
        try:
            for customer_id, (version, value) in mirrors.items():
                self._write_newer(
                    keys=[self.key(customer_id)], args=[version, value, MIRROR_SECONDS]
                )
        except RedisError as error:
            log.error(
                "claims: Redis write failed for accounts %s (their mirrors lapse within %d s): %s",
                sorted(mirrors),
                MIRROR_SECONDS,
                error,
            )

    def forget(self, customer_ids: list[int]) -> None:
        try:
            self.client.delete(*map(self.key, customer_ids))
        except RedisError as error:
            log.error(
                "claims: Redis delete failed for accounts %s (their mirrors lapse within %d s): %s",
                customer_ids,
                MIRROR_SECONDS,
                error,
            )


def redis_prefix(key_prefix: str | None) -> str:
    """Where mirrors live in Redis (the account id follows), under ``RATELIMIT_KEY_PREFIX``."""
    return (key_prefix or "smallbatch") + "/claim/"


def _store() -> RedisMirrors | None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    extensions = app.extensions
    if "shop.claims" not in extensions:
        url = app.config.get("REDIS_URL")
        store = None
        if url and database.is_postgresql():
            client = redis.Redis.from_url(
                url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
            )
            store = RedisMirrors(client, redis_prefix(app.config.get("RATELIMIT_KEY_PREFIX")))
        extensions.setdefault("shop.claims", store)
    return extensions["shop.claims"]


# --- what marks a claim changed ---------------------------------------------------------------


@event.listens_for(User.session_token, "set")
def _token_set(user: User, value, old, _initiator) -> None:
    if value != old:
        changed(user.id, object_session(user))


@event.listens_for(WaitlistPlace.state, "set")
def _place_set(place: WaitlistPlace, value, old, _initiator) -> None:
    if value != old:
        changed(place.customer_id, object_session(place))


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    ids = session.info.pop(_CHANGED, None)
    if ids and has_app_context():
        refresh(ids)

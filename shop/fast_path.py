"""The crowd's cookieless reads answered before Flask: the live stock JSON and the anonymous
drop page, replayed from what the Flask view answered last for the same state.

A flash crowd mostly reads, and these two answers are the same for every visitor without a
cookie. The views already make them from the shared page cache (``shop.page_cache``); what was
left of their cost was Flask's own per-request machinery — request context, session, login,
hooks — several times the work of the answer itself.

So a view marks such an answer as one to keep (``keep``), with the tag it was made for: the
state's read time and phase for the numbers, the page key for the page. This middleware keeps
the answer exactly as it went out (status, every header the app's hooks added, the body), and
answers the next cookieless ``GET`` of the same address with it while the shared state still
gives the same tag — with a fresh request id, the page's clock filled in, a 304 for its ETag,
the request logged and counted as the app would. Anything else goes to Flask: a cookie, a query
string, another method, a state no longer cached (it lives ``page_cache.STATE_SECONDS``), a tag
not seen yet. The state decides, as in the views: an edit evicts it, so the very next request
is Flask's again, and a stale answer is as impossible here as there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import Flask, request
from werkzeug.http import parse_cookie, parse_etags, unquote_etag

from shop import auth, catalog, clock, logs, metrics, page_cache, security, waiting_room
from shop.models.drop import ROOM_OFF
from shop.templating import iso

_ROUTES = re.compile(r"/(?:api/drops/(?P<stock>[^/]+)/stock|drops/(?P<page>[^/]+))")
_RULES = {"stock": "/api/drops/<slug>/stock", "page": "/drops/<slug>"}
_ENDPOINTS = {"stock": "storefront.drop_stock", "page": "storefront.drop"}
_KEEP = "shop.fast_path"  # environ: what the view said this answer may be kept as
_KEEP_SIGNED_IN = "shop.fast_path.signed_in"  # ...a signed-in page, kept per shape
ROOM_ASKED = "shop.fast_path.room"  # environ: whether the room was open (the visit counted)
_NOT_KEPT = frozenset({"x-request-id", "date", "content-length", "server", "set-cookie"})
# A session with nothing but these keys changes nothing when a drop page is read: no message
# to show and use up, no remember-me cookie to set (Flask-Login, Flask-WTF, shop.auth; the
# login of a confirmed address keeps ``auth.VERIFIED``).
_PLAIN = frozenset({"_user_id", "_fresh", "_id", "csrf_token", auth.LINKS, auth.VERIFIED})
_NOT_IN_304 = frozenset({"content-type"})
_LIMIT = 1024  # drops with a kept answer in this process


@dataclass(frozen=True)
class Kept:
    tag: str
    status: str
    headers: list[tuple[str, str]]
    parts: tuple[bytes, ...]  # the body; a page's is what comes before and after its clock
    etag: str | None


@dataclass(frozen=True)
class SignedIn:
    tag: str
    status: str
    headers: list[tuple[str, str]]
    page: str  # with the token mark and the clock slot (``page_cache.personal``)


def keep(tag: str, *, around_clock: tuple[str, str] | None = None) -> None:
    """Called by a view: this answer may be replayed while the state gives ``tag``. A page
    passes its text before and after the clock, which each replay fills with its own time."""
    request.environ[_KEEP] = (tag, around_clock)


@dataclass(frozen=True)
class PageFacts:
    """What a signed-in drop page's shape depends on beside the visitor's own rows, as of the
    page key ``key``: the drop's room and each batch's id, per-customer limit and units left."""

    key: str
    id: int  # the drop's, as ``waiting_room.is_open`` asks a drop
    waiting_room: str
    batches: tuple[tuple[int, int, int], ...]

    @property
    def batch_ids(self) -> list[int]:
        return [batch for batch, _, _ in self.batches]

    @classmethod
    def of(cls, drop, key: str) -> PageFacts:
        return cls(
            key,
            drop.id,
            drop.waiting_room,
            tuple((b.id, b.per_customer_limit, b.remaining) for b in drop.batches),
        )

    def allowed(self, taken: tuple) -> dict[int, int]:
        """``catalog.allowed_quantities`` of a visitor who took ``taken`` (by batch, in order)."""
        return {
            batch: catalog.may_still_take(limit, units or 0, remaining)
            for (batch, limit, remaining), units in zip(self.batches, taken, strict=True)
        }


def keep_signed_in(key: str, shape: str, page: str, facts: PageFacts) -> None:
    """Called by the drop view: a signed-in visitor's ``page`` (``page_cache.personal`` fills
    it) is every visitor's of this ``shape`` who holds nothing here, while the state gives
    ``key``."""
    request.environ[_KEEP_SIGNED_IN] = (key, shape, page, facts)


def stock_tag(state: page_cache.DropState, phase: str) -> str:
    return f"{state.read_at.isoformat()}|{phase}"


class FastPath:
    """WSGI middleware around the Flask app (inside ``ProxyFix``, so the client address is the
    real one)."""

    def __init__(self, app: Flask, wsgi_app: Callable) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.kept: dict[tuple[str, str], Kept] = {}
        self.signed: dict[tuple[str, str], SignedIn] = {}  # by slug and shape
        self.facts: dict[str, PageFacts] = {}  # by slug
        self.session_cookie = app.config["SESSION_COOKIE_NAME"]
        self.token_field = app.config.get("WTF_CSRF_FIELD_NAME") or "csrf_token"

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
            return self.wsgi_app(environ, start_response)
        found = _ROUTES.fullmatch(environ.get("PATH_INFO", ""))
        if found is None:
            return self.wsgi_app(environ, start_response)
        kind = "stock" if found["stock"] else "page"
        slug = found[kind]
        started = time.perf_counter()
        cookie = environ.get("HTTP_COOKIE")
        if cookie:
            if kind != "page":
                return self.wsgi_app(environ, start_response)
            answer = self._signed_in(slug, cookie, environ, start_response, started)
            if answer is not None:
                return answer
            return self._through(kind, slug, environ, start_response)
        kept = self.kept.get((kind, slug))
        if kept is not None and kept.tag == self._tag(kind, slug):
            return self._replay(kind, kept, environ, start_response, started)
        return self._through(kind, slug, environ, start_response)

    def _tag(self, kind: str, slug: str) -> str | None:
        state = page_cache.cached_state(self.app, slug)
        if state is None:
            return None
        now = clock.now()
        phase = state.phase(now)
        return (
            stock_tag(state, phase) if kind == "stock" else page_cache.page_key(state, phase, now)
        )

    def _replay(
        self, kind: str, kept: Kept, environ: dict, start_response: Callable, started: float
    ) -> list[bytes]:
        headers = kept.headers
        asked = environ.get("HTTP_IF_NONE_MATCH")
        if kept.etag is not None and asked and parse_etags(asked).contains_weak(kept.etag):
            status, body = "304 NOT MODIFIED", None
            headers = [(k, v) for k, v in headers if k.lower() not in _NOT_IN_304]
        else:
            status = kept.status
            if len(kept.parts) == 2:
                clock_text = iso(clock.now()).encode()
                body = kept.parts[0] + clock_text + kept.parts[1]
            else:
                body = kept.parts[0]
        return _send(kind, status, headers, body, None, environ, start_response, started)

    def _signed_in(
        self, slug: str, cookie: str, environ: dict, start_response: Callable, started: float
    ) -> list[bytes] | None:
        """A signed-in visitor who holds nothing of the drop gets the page Flask gave the last
        such visitor of their shape for the same key, with their own CSRF token — after the
        same checks: the session cookie verified by the app's own serializer, the account and
        its allotments read in one statement that checks the session's token, the room asked.
        None (Flask answers) for anything else: a message or a remember-me cookie to set, no
        CSRF token yet, a stale claim, units taken, an open room, a shape or key not kept."""
        facts = self.facts.get(slug)
        if facts is None:
            return None
        app = self.app
        data = app.session_interface.read(app, parse_cookie(cookie).get(self.session_cookie))
        if data is None or not _PLAIN.issuperset(data):
            return None
        claim = auth.parse_claim(data.get("_user_id"))
        raw = data.get(self.token_field)
        if claim is None or not isinstance(raw, str) or self._tag("page", slug) != facts.key:
            return None
        with app.app_context():
            now = clock.now()
            if facts.waiting_room != ROOM_OFF:
                environ[ROOM_ASKED] = room_open = waiting_room.is_open(
                    facts, facts.batch_ids, now_ms=clock.ms(now)
                )
                if room_open:
                    return None
            found = auth.links_and_taken(claim, facts.batch_ids)
            if found is None or any(found[1]) or found[2]:
                return None  # a stale claim, or something of theirs on the page
            account, taken, _ = found
            kept = self.signed.get((slug, page_cache.shape(account, facts.allowed(taken))))
            if kept is None or kept.tag != facts.key:
                return None
            body = page_cache.personal(kept.page, security.csrf_token(app, raw), now).encode()
        return _send(
            "page", kept.status, kept.headers, body, claim.id, environ, start_response, started
        )

    def _through(
        self, kind: str, slug: str, environ: dict, start_response: Callable
    ) -> Iterable[bytes]:
        """Flask answers; an answer its view said may be kept is kept as it went out."""
        sent: list = []

        def capture(status, headers, exc_info=None):
            sent[:] = [status, headers]
            return start_response(status, headers, exc_info)

        answer = self.wsgi_app(environ, capture)
        if not sent or not sent[0].startswith("200"):
            return answer
        signed_in = environ.get(_KEEP_SIGNED_IN)
        if signed_in is not None:
            key, shape, page, facts = signed_in
            self._bounded(self.signed)[(slug, shape)] = SignedIn(
                key, sent[0], _headers_kept(sent[1]), page
            )
            self._bounded(self.facts)[slug] = facts
            return answer
        marked = environ.get(_KEEP)
        if marked is None:
            return answer
        if any(name.lower() == "set-cookie" for name, _ in sent[1]):
            return answer  # somebody's cookie is never anybody else's answer
        try:
            body = b"".join(answer)
        finally:
            getattr(answer, "close", lambda: None)()
        tag, around_clock = marked
        parts = (
            (around_clock[0].encode(), around_clock[1].encode())
            if around_clock is not None
            else (body,)
        )
        headers = _headers_kept(sent[1])
        etag = next((v for k, v in headers if k.lower() == "etag"), None)
        self._bounded(self.kept)[(kind, slug)] = Kept(
            tag, sent[0], headers, parts, unquote_etag(etag)[0] if etag else None
        )
        return [body]

    @staticmethod
    def _bounded(kept: dict) -> dict:
        if len(kept) >= _LIMIT:
            kept.clear()
        return kept


def _send(
    kind: str,
    status: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    user_id: int | None,
    environ: dict,
    start_response: Callable,
    started: float,
) -> list[bytes]:
    """A kept answer sent as the app would send it: a fresh request id, the body's length (no
    body: a 304), the request logged and counted."""
    request_id = logs.request_id(environ.get("HTTP_X_REQUEST_ID", ""))
    headers = [*headers, ("X-Request-Id", request_id)]
    if body is not None:
        headers.append(("Content-Length", str(len(body))))
    start_response(status, headers)
    code = int(status[:3])
    logs.log_answer(
        "GET",
        _RULES[kind],
        code,
        started=started,
        user_id=None if user_id is None else lambda: user_id,
        client=environ.get("REMOTE_ADDR"),
        request_id=request_id,
    )
    metrics.count_answer(_ENDPOINTS[kind], "GET", code, started)
    return [body or b""]


def _headers_kept(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """An answer's headers as a replay sends them: without its request id, date, length (each
    replay has its own) and any cookie (somebody's cookie is never anybody else's answer)."""
    return [(k, v) for k, v in headers if k.lower() not in _NOT_KEPT]


def install(app: Flask) -> None:
    """Put the fast path in front of the app (before ``ProxyFix`` wraps them both)."""
    app.wsgi_app = FastPath(app, app.wsgi_app)  # type: ignore[method-assign]

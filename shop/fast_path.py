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

A signed-in visitor who holds nothing of a drop gets, the same way, the page Flask gave the
last visitor of their shape (``_signed_in``). And once a batch's last unit is gone, the buys
the crowd keeps sending for it are refused here as the buy view refuses them (``_refused``): the
same checks in the same order — CSRF token, session, form, the room, the rate limits counted
where Flask-Limiter counts them — then the small sold-out page Flask kept for the same facts.
Whatever this code is not sure of goes to Flask, whose answer is then the visitor's.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import Flask, request
from flask_limiter.constants import HeaderNames
from werkzeug.datastructures import MIMEAccept, MultiDict
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_accept_header, parse_cookie, parse_etags, unquote_etag

from shop import (
    auth,
    catalog,
    claims,
    clock,
    errors,
    forms,
    limits,
    logs,
    metrics,
    page_cache,
    refusal_counts,
    security,
    waiting_room,
)
from shop.errors import ShopError, SoldOut
from shop.models.drop import ROOM_OFF
from shop.templating import iso

log = logging.getLogger(__name__)

_ROUTES = re.compile(r"/(?:api/drops/(?P<stock>[^/]+)/stock|drops/(?P<page>[^/]+))")
_BUY = re.compile(r"/checkout/batches/(?P<batch>[1-9][0-9]{0,17})")
_RULES = {
    "stock": "/api/drops/<slug>/stock",
    "page": "/drops/<slug>",
    "buy": "/checkout/batches/<int:batch_id>",
}
_ENDPOINTS = {"stock": "storefront.drop_stock", "page": "storefront.drop", "buy": "checkout.buy"}
_KEEP = "shop.fast_path"  # environ: what the view said this answer may be kept as
_KEEP_SIGNED_IN = "shop.fast_path.signed_in"  # ...a signed-in page, kept per shape
_KEEP_REFUSAL = "shop.fast_path.refusal"  # ...the sold-out answer to a buy, for its headers
ROOM_ASKED = "shop.fast_path.room"  # environ: whether the room was open (the visit counted)
_NOT_KEPT = frozenset({"x-request-id", "date", "content-length", "server", "set-cookie"})
_LIMIT_HEADERS = frozenset(name.value.lower() for name in HeaderNames)  # each request's own
_FORM = "application/x-www-form-urlencoded"
_FORM_BYTES = 2048  # a buy form is a token, a quantity and perhaps a date and a country
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


def keep_refusal() -> None:
    """Called by the buy view answering with the sold-out page: its headers may go out with
    the same answer made before Flask (``_refused``)."""
    request.environ[_KEEP_REFUSAL] = True


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
        self.refusal_headers: list[tuple[str, str]] | None = None  # of Flask's sold-out answer
        self.session_cookie = app.config["SESSION_COOKIE_NAME"]
        self.token_field = app.config.get("WTF_CSRF_FIELD_NAME") or "csrf_token"

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if method == "POST" and not environ.get("QUERY_STRING"):
            buy = _BUY.fullmatch(environ.get("PATH_INFO", ""))
            if buy is not None:
                return self._buy(int(buy["batch"]), environ, start_response)
        if method != "GET" or environ.get("QUERY_STRING"):
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
        signed_in = self._session(cookie)
        if signed_in is None or self._tag("page", slug) != facts.key:
            return None
        _, claim, raw = signed_in
        app = self.app
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

    def _session(self, cookie: str) -> tuple[dict, auth.SessionClaim, str] | None:
        """A plain signed-in session (``_PLAIN``), verified by the app's own serializer: its
        data, its claim and its raw CSRF token. None for anything else."""
        app = self.app
        data = app.session_interface.read(app, parse_cookie(cookie).get(self.session_cookie))
        if data is None or not _PLAIN.issuperset(data):
            return None
        claim = auth.parse_claim(data.get("_user_id"))
        raw = data.get(self.token_field)
        if claim is None or not isinstance(raw, str):
            return None
        return data, claim, raw

    def _buy(self, batch_id: int, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """A buy: refused here when ``_refused`` is sure Flask would refuse it so, else Flask's.
        An error on the way (a store that does not answer) is Flask's to handle too."""
        started = time.perf_counter()
        try:
            refused = self._refused(batch_id, environ)
        except Exception:
            log.exception("the sold-out refusal failed before Flask; Flask answers")
            refused = None
        if refused is None:
            return self._through_buy(environ, start_response)
        headers, body, user_id = refused
        status = f"{SoldOut.status} CONFLICT"
        return _send("buy", status, headers, body, user_id, environ, start_response, started)

    def _refused(
        self, batch_id: int, environ: dict
    ) -> tuple[list[tuple[str, str]], bytes, int] | None:
        """A buy of a batch with nothing left (``page_cache.nothing_left``: shared, so only
        with Redis), refused as ``checkout.buy`` refuses it, after its checks in its order:
        an HTML form, a plain signed-in session, the CSRF token Flask-WTF would take, a
        confirmed address where one is asked for, the quantity and date of birth, no room
        open for the drop, the session's token still the account's (the one statement, which
        also says whether the buyer is in the batch's line) and the buy's rate limits, counted
        where Flask-Limiter counts them. Then the sold-out page this process rendered for the
        same facts, with the visitor's nav, clock and token, and the headers of Flask's last
        such answer: its headers, body and the buyer. None (Flask answers) for anything else,
        or a page or nav not kept yet."""
        cookie = environ.get("HTTP_COOKIE")
        content_type = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if self.refusal_headers is None or not cookie or content_type != _FORM:
            return None
        if errors.accepts_json(parse_accept_header(environ.get("HTTP_ACCEPT"), MIMEAccept)):
            return None
        signed_in = self._session(cookie)
        if signed_in is None:
            return None
        data, claim, raw = signed_in
        account = auth.links_kept(data)
        app = self.app
        if account is None or (
            app.config["SHOP_REQUIRE_VERIFIED_EMAIL"] and data.get(auth.VERIFIED) is not True
        ):
            return None
        form = _small_form(environ)
        if form is None:
            return None
        with app.app_context():
            room, gone, mirrored = waiting_room.before_buy(batch_id, claim.id)
            if (
                room is not None
                or gone is None
                or not security.csrf_accepted(app, raw, form.get(self.token_field), environ)
            ):
                return None
            now = clock.now()
            try:
                forms.buy_terms(form, now.date())
            except ShopError:
                return None
            in_line = claims.in_line(batch_id, claim, mirrored)
            if in_line is None:
                return None
            shell = page_cache.sold_out_shell(gone.seen_by(in_line=in_line), render=False)
            nav = page_cache.kept_nav(_ENDPOINTS["buy"], account)
            if shell is None or nav is None:
                return None
            limited = limits.buy_counted(claim.id, environ.get("REMOTE_ADDR") or "127.0.0.1")
            if limited is None:
                return None
            body = page_cache.filled(
                shell, {"nav": nav}, now, lambda: security.csrf_token(app, raw)
            ).encode()
            metrics.hold_refused(SoldOut.code)
            refusal_counts.count(batch_id, SoldOut.code)
        return [*self.refusal_headers, *limited], body, claim.id

    def _through_buy(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Flask answers a buy; the headers of its sold-out answer are kept for ``_refused``
        (not the rate limit's, which are each request's own)."""

        def capture(status, headers, exc_info=None):
            if environ.get(_KEEP_REFUSAL) and status.startswith(str(SoldOut.status)):
                self.refusal_headers = [
                    (k, v) for k, v in _headers_kept(headers) if k.lower() not in _LIMIT_HEADERS
                ]
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, capture)

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
    method = environ["REQUEST_METHOD"]
    logs.log_answer(
        method,
        _RULES[kind],
        code,
        started=started,
        user_id=None if user_id is None else lambda: user_id,
        client=environ.get("REMOTE_ADDR"),
        request_id=request_id,
    )
    metrics.count_answer(_ENDPOINTS[kind], method, code, started)
    return [body or b""]


def _small_form(environ: dict) -> MultiDict | None:
    """A small urlencoded body's fields, read by Werkzeug's form parser as ``request.form``
    reads them (one that is not UTF-8 reads as no fields), the body put back for Flask to read
    again; None for a body without a length or a long one."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if not 0 < length <= _FORM_BYTES:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    if len(body) != length:
        return None
    return FormDataParser().parse(io.BytesIO(body), _FORM, length)[1]


def _headers_kept(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """An answer's headers as a replay sends them: without its request id, date, length (each
    replay has its own) and any cookie (somebody's cookie is never anybody else's answer)."""
    return [(k, v) for k, v in headers if k.lower() not in _NOT_KEPT]


def install(app: Flask) -> None:
    """Put the fast path in front of the app (before ``ProxyFix`` wraps them both)."""
    app.wsgi_app = FastPath(app, app.wsgi_app)  # type: ignore[method-assign]

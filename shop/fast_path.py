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
from werkzeug.http import parse_etags, unquote_etag

from shop import clock, logs, metrics, page_cache
from shop.templating import iso

_ROUTES = re.compile(r"/(?:api/drops/(?P<stock>[^/]+)/stock|drops/(?P<page>[^/]+))")
_RULES = {"stock": "/api/drops/<slug>/stock", "page": "/drops/<slug>"}
_ENDPOINTS = {"stock": "storefront.drop_stock", "page": "storefront.drop"}
_KEEP = "shop.fast_path"  # environ: what the view said this answer may be kept as
_NOT_KEPT = frozenset({"x-request-id", "date", "content-length", "server"})
_NOT_IN_304 = frozenset({"content-type"})
_LIMIT = 1024  # drops with a kept answer in this process


@dataclass(frozen=True)
class Kept:
    tag: str
    status: str
    headers: list[tuple[str, str]]
    parts: tuple[bytes, ...]  # the body; a page's is what comes before and after its clock
    etag: str | None


def keep(tag: str, *, around_clock: tuple[str, str] | None = None) -> None:
    """Called by a view: this answer may be replayed while the state gives ``tag``. A page
    passes its text before and after the clock, which each replay fills with its own time."""
    request.environ[_KEEP] = (tag, around_clock)


def stock_tag(state: page_cache.DropState, phase: str) -> str:
    return f"{state.read_at.isoformat()}|{phase}"


class FastPath:
    """WSGI middleware around the Flask app (inside ``ProxyFix``, so the client address is the
    real one)."""

    def __init__(self, app: Flask, wsgi_app: Callable) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.kept: dict[tuple[str, str], Kept] = {}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("HTTP_COOKIE")
            or environ.get("QUERY_STRING")
        ):
            return self.wsgi_app(environ, start_response)
        found = _ROUTES.fullmatch(environ.get("PATH_INFO", ""))
        if found is None:
            return self.wsgi_app(environ, start_response)
        kind = "stock" if found["stock"] else "page"
        slug = found[kind]
        started = time.perf_counter()
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
        request_id = logs.request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        headers = [*kept.headers, ("X-Request-Id", request_id)]
        asked = environ.get("HTTP_IF_NONE_MATCH")
        if kept.etag is not None and asked and parse_etags(asked).contains_weak(kept.etag):
            status, body = "304 NOT MODIFIED", b""
            headers = [(k, v) for k, v in headers if k.lower() not in _NOT_IN_304]
        else:
            status = kept.status
            if len(kept.parts) == 2:
                clock_text = iso(clock.now()).encode()
                body = kept.parts[0] + clock_text + kept.parts[1]
            else:
                body = kept.parts[0]
            headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        code = int(status[:3])
        logs.log_answer(
            "GET",
            _RULES[kind],
            code,
            started=started,
            user_id=None,
            client=environ.get("REMOTE_ADDR"),
            request_id=request_id,
        )
        metrics.count_answer(_ENDPOINTS[kind], "GET", code, started)
        return [body]

    def _through(
        self, kind: str, slug: str, environ: dict, start_response: Callable
    ) -> Iterable[bytes]:
        """Flask answers; an answer its view said may be kept is kept as it went out."""
        sent: list = []

        def capture(status, headers, exc_info=None):
            sent[:] = [status, headers]
            return start_response(status, headers, exc_info)

        answer = self.wsgi_app(environ, capture)
        marked = environ.get(_KEEP)
        if marked is None or not sent or not sent[0].startswith("200"):
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
        headers = [(k, v) for k, v in sent[1] if k.lower() not in _NOT_KEPT]
        etag = next((v for k, v in headers if k.lower() == "etag"), None)
        if len(self.kept) >= _LIMIT:
            self.kept.clear()
        self.kept[(kind, slug)] = Kept(
            tag, sent[0], headers, parts, unquote_etag(etag)[0] if etag else None
        )
        return [body]


def install(app: Flask) -> None:
    """Put the fast path in front of the app (before ``ProxyFix`` wraps them both)."""
    app.wsgi_app = FastPath(app, app.wsgi_app)  # type: ignore[method-assign]

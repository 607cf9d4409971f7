"""What customers see: the home page, drops, batches, certificates and live stock numbers."""

from __future__ import annotations

import io

import segno
from flask import (
    Blueprint,
    Response,
    abort,
    g,
    jsonify,
    make_response,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import AnonymousUserMixin, current_user
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup

from shop import (
    auth,
    catalog,
    certificates,
    clock,
    draws,
    fast_path,
    images,
    ledger,
    notifications,
    page_cache,
    waitlist,
)
from shop.errors import ShopError
from shop.models import Batch, Drop
from shop.queue import views as queue_views
from shop.templating import SHARED_RENDER, iso

bp = Blueprint("storefront", __name__)

# The live numbers are at most a second old in the shop; a proxy may keep them as long.
STOCK_CACHE_CONTROL = "public, max-age=1, s-maxage=1"
# The anonymous drop page: a proxy may serve it for a second, and a stale copy while it asks
# again (the ETag makes that a 304); browsers always ask. Signed in, a page is nobody else's.
SHARED_CACHE_CONTROL = "public, max-age=0, s-maxage=1, stale-while-revalidate=4"
PERSONAL_CACHE_CONTROL = "private, no-store"


@bp.get("/")
def home():
    now = clock.now()
    return render_template("storefront/home.html", listing=catalog.home_listing(now), now=now)


@bp.get("/drops/<slug>")
def drop(slug: str):
    """The page a crowd reloads. Its shared part comes from the page cache (one render per
    ``page_cache.page_key``, for every process); an anonymous visitor gets that whole, a
    signed-in one gets it with their own pieces — nav, buy panels, holds, CSRF tokens — filled
    in from their own rows alone (docs/ARCHITECTURE.md, "The drop page cache")."""
    now = clock.now()
    state = page_cache.drop_state(slug, now)
    if state is None:
        abort(404)
    phase = state.phase(now)
    key = page_cache.page_key(state, phase, now)
    found = page_cache.snapshot(slug, key, lambda: catalog.detached_public_drop(slug))
    if found is None:
        abort(404)
    to_the_line = queue_views.gate(found, state)
    if to_the_line is not None:
        return to_the_line
    taken = _account_and_taken(found, phase)
    if not current_user.is_authenticated and "_flashes" not in session:
        return _shared_page(found, key, phase, now)
    shell = _shell(found, key, phase, now)
    pieces, shape = _pieces(found, key, phase, now, taken=taken)
    page = page_cache.fill(shell, pieces | {"now": page_cache.slot("now")}, last=True)
    if shape is not None and taken is not None and not any(taken.values()) and not found.is_draw:
        # Nothing of this visitor's own rows is on it: the next visitor of this shape with
        # nothing here either (no units, no place in line) may get it before Flask, with
        # their own token (shop.fast_path). A draw's entries are not asked there.
        fast_path.keep_signed_in(key, shape, page, fast_path.PageFacts.of(found, key))
    response = make_response(page_cache.personal(page, generate_csrf(), now))
    response.headers["Cache-Control"] = PERSONAL_CACHE_CONTROL
    return response


def _shared_page(drop: Drop, key: str, phase: str, now) -> Response:
    """The anonymous drop page: the same for every visitor but for its clock, so a proxy may
    serve it for a second, and revalidate it by its key."""
    if request.if_none_match.contains_weak(key):
        response = Response(status=304)
    else:

        def render() -> str:
            shell = _shell(drop, key, phase, now)
            found, _ = _pieces(drop, key, phase, now)
            found["now"] = page_cache.slot("now")  # kept: each answer has its own clock
            return page_cache.fill(shell, found, last=True)

        page = page_cache.rendered(drop.slug, "anonymous", key, render)
        head, _, tail = page.partition(page_cache.slot("now"))
        response = make_response(head + iso(now) + tail)
        fast_path.keep(key, around_clock=(head, tail))  # the next such visit skips Flask
    response.set_etag(key, weak=True)
    response.headers["Cache-Control"] = SHARED_CACHE_CONTROL
    response.vary.add("Cookie")
    return response


def _shell(drop: Drop, key: str, phase: str, now) -> str:
    """drop.html with a slot for everything personal, rendered as nobody (times in UTC) by the
    first process to ask for ``key``: what every visitor of this key shares."""

    def render() -> str:
        g.setdefault(SHARED_RENDER, True)
        try:
            return _drop_html(
                drop, phase, now, slot=page_cache.slot, current_user=AnonymousUserMixin()
            )
        finally:
            g.pop(SHARED_RENDER, None)

    return page_cache.rendered(drop.slug, "shell", key, render)


def _account_and_taken(drop: Drop, phase: str) -> dict[int, int] | None:
    """On a live drop, the signed-in visitor's account and the units they took of each batch,
    in one statement (``auth.load_with``); None when nobody signed in is there to ask for."""
    if phase != "live":
        return None
    ids = [batch.id for batch in drop.batches]
    values = auth.load_with(
        ("taken", len(ids)), lambda: catalog.taken_columns(len(ids)), catalog.taken_params(ids)
    )
    return None if values is None else catalog.taken_from(ids, values)


def _pieces(
    drop: Drop, key: str, phase: str, now, *, taken: dict[int, int] | None = None
) -> tuple[dict[str, str], str | None]:
    """This visitor's pieces of the page, by slot (drop_pieces.html), and their shape. Pieces
    with nothing of the visitor's own rows in them — no hold, place in line, draw entry or
    message, only what they may buy and which links their account has — are the same for
    everyone of that shape: rendered once per shape and key in this process, with
    ``page_cache.token_mark()`` for the CSRF token (``page_cache.personal`` puts it in)."""
    personal = _personal(drop, phase, now, taken=taken)

    def render(**token) -> str:
        return render_template(
            "storefront/drop_pieces.html",
            drop=drop,
            now=now,
            phase=phase,
            mark=page_cache.slot,
            pay_hours=draws.pay_hours(),
            **personal,
            **token,
        )

    shape = _shape(personal, phase)
    if shape is None:
        return page_cache.pieces(render()), None
    mark = page_cache.token_mark()
    kept = page_cache.kept_here(
        f"pieces:{drop.slug}:{key}:{shape}", lambda: render(csrf_token=lambda: mark)
    )
    return page_cache.pieces(kept), shape


def _shape(personal: dict, phase: str) -> str | None:
    """What a visitor's pieces depend on when nothing in them is theirs alone; None when
    something is (or when a message waits to be shown: showing it uses it up)."""
    if (
        personal["holds"]
        or personal["lines"]
        or personal["entries"]
        or phase == "upcoming"
        or "_flashes" in session
    ):
        return None
    account = (
        auth.NavAccount(current_user.is_maker, current_user.is_admin)
        if (current_user.is_authenticated)
        else None
    )
    return page_cache.shape(account, personal["allowed"])


def drop_page(drop: Drop, *, error: ShopError | None = None) -> str:
    """The drop page rendered whole and afresh, with ``error`` (a domain error from buying)
    shown next to the batch the customer tried to buy. The checkout view renders its refusals
    through this, with the drop loaded afresh after the failed attempt."""
    now = clock.now()
    phase = drop.phase(now)
    error_batch_id = (request.view_args or {}).get("batch_id") if error is not None else None
    return _drop_html(
        drop,
        phase,
        now,
        error=error,
        error_batch_id=error_batch_id,
        **_personal(drop, phase, now),
    )


def _drop_html(drop: Drop, phase: str, now, *, error=None, error_batch_id=None, **context) -> str:
    """drop.html: whole (``_personal`` in ``context``) or as the shell (``slot`` in it)."""
    return render_template(
        "storefront/drop.html",
        drop=drop,
        now=now,
        phase=phase,
        sold_out_in=catalog.sold_out_times(drop.batches),
        error=error,
        error_batch_id=error_batch_id,
        pay_hours=draws.pay_hours(),
        **context,
    )


def _personal(drop: Drop, phase: str, now, *, taken: dict[int, int] | None = None) -> dict:
    """What of a drop page is the visitor's own: what they may buy, their holds, their places
    in line, draw entries, "notify me" (``taken``: their allotments, when read already)."""
    allowed, holds = _own(drop.batches, phase, now, taken=taken)
    customer = current_user if current_user.is_authenticated else None
    return {
        "allowed": allowed,
        "holds": holds,
        "lines": _lines(drop.batches),
        "entries": draws.entries_of(customer, drop),
        "notify_subscribed": phase == "upcoming"
        and customer is not None
        and notifications.is_subscribed(drop, customer),
    }


def _own(
    batches: list[Batch], phase: str, now, *, taken: dict[int, int] | None = None
) -> tuple[dict[int, int], dict]:
    """How many units of each batch this visitor may still buy (0 unless the drop is live and
    they are signed in), and their running holds (so the page offers to finish paying): on a
    live drop one small query, and the holds only when it says they hold or bought some."""
    nothing = {batch.id: 0 for batch in batches}
    if not current_user.is_authenticated:
        return nothing, {}
    ids = [batch.id for batch in batches]
    if phase != "live":
        return nothing, catalog.live_holds(current_user, ids, now)
    if taken is None:
        taken = catalog.taken_units(ids, current_user)
    allowed = catalog.allowed_quantities(batches, current_user, taken=taken)
    holds = catalog.live_holds(current_user, ids, now) if any(taken.values()) else {}
    return allowed, holds


def _lines(batches: list[Batch]) -> dict[int, waitlist.Standing]:
    """The signed-in customer's places in line, asked only where a line can show: a batch all
    taken for now but not sold for good (a page with stock, or sold out, costs no query for
    it). A place already offered shows as the customer's running hold."""
    if not current_user.is_authenticated or not any(
        batch.remaining <= 0 < batch.edition_size - batch.sold for batch in batches
    ):
        return {}
    return waitlist.standings(current_user, [batch.id for batch in batches])


@bp.get("/products/<product_slug>/batches/<int:number>")
def batch(product_slug: str, number: int):
    found = catalog.batch_by_number(product_slug, number)
    if found is None:
        abort(404)
    now = clock.now()
    phase = found.drop.phase(now)
    siblings = catalog.sibling_batches(found)
    allowed, holds = _own([found], phase, now)
    return render_template(
        "storefront/batch.html",
        batch=found,
        drop=found.drop,
        now=now,
        phase=phase,
        allowed=allowed,
        holds=holds,
        lines=_lines([found]),
        earlier=[b for b in siblings if b.number < found.number],
        later=[b for b in siblings if b.number > found.number],
        sold_out_in=catalog.sold_out_times([found, *siblings]),
    )


@bp.get("/products/<product_slug>/batches/<int:number>/ledger")
def batch_ledger(product_slug: str, number: int):
    """The edition's public ledger: its size and every change to it, the counts, and one line
    per number — for every batch whose drop has opened."""
    found = catalog.batch_by_number(product_slug, number)
    if found is None or not found.drop.has_opened(clock.now()):
        abort(404)
    page = request.args.get("page", "1")
    return render_template(
        "storefront/ledger.html",
        ledger=ledger.public_ledger(found, page=int(page) if page.isdigit() else 1),
        batch=found,
    )


@bp.get("/u/<code>")
def certificate(code: str):
    """A unit's certificate, checked: a link's signed fields must be this unit's and carry the
    shop's signature ("Genuine"); a plain code is checked against the shop's records."""
    unit = catalog.certificate(code)
    if unit is None:
        # Someone checking a label deserves more than "the page may have moved".
        return render_template("storefront/no_certificate.html", code=code), 404
    if unit.is_retired:
        # Gone for good, and said so: the number is never sold again.
        return render_template("storefront/retired_certificate.html", unit=unit), 410
    presented = request.args.to_dict()
    signed = "s" in presented
    if signed and not certificates.presented_matches(unit, presented):
        return render_template("storefront/not_genuine.html", unit=unit, code=code), 400
    url = certificates.link_for(unit)
    qr = segno.make(url, error="m").svg_inline(
        omitsize=True, svgclass="qr", lineclass=None, dark="#1e231f", border=2
    )
    return render_template(
        "storefront/certificate.html",
        unit=unit,
        batch=unit.batch,
        canonical_url=url,
        short_url=url.split("?", 1)[0],
        signature_checked=signed,
        key_url=url_for("storefront.certificate_key"),
        qr_svg=Markup(qr),  # noqa: S704 - segno SVG of our own URL  # nosec B704
    )


def _certified_unit(code: str):
    unit = catalog.certificate(code)
    if unit is None or unit.is_retired:
        abort(404)
    return unit


@bp.get("/u/<code>/qr.svg")
def certificate_qr(code: str):
    """The certificate's QR code alone (the signed link), as SVG for label printers."""
    svg = segno.make(certificates.link_for(_certified_unit(code)), error="m").svg_inline(
        scale=8, lineclass=None, dark="#000", border=2
    )
    body = '<?xml version="1.0" encoding="utf-8"?>\n' + svg.replace(
        "<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1
    )
    return _qr_response(body, "image/svg+xml")


@bp.get("/u/<code>/qr.png")
def certificate_qr_png(code: str):
    """The same QR code as PNG, which every label printer and phone app reads."""
    out = io.BytesIO()
    segno.make(certificates.link_for(_certified_unit(code)), error="m").save(
        out, kind="png", scale=8, border=2, dark="#000"
    )
    return _qr_response(out.getvalue(), "image/png")


def _qr_response(body, mimetype: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.get(certificates.KEY_PATH)
def certificate_key():
    """The public key every certificate's signature checks against (PEM)."""
    response = Response(certificates.public_key_pem(certificates.shop_key()), mimetype="text/plain")
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/api/drops/<slug>/stock")
def drop_stock(slug: str):
    """Live numbers for a drop page, from the shared cache (at most ``page_cache.STATE_SECONDS``
    old; ``now`` says when they were read) and cacheable by a proxy for as long. Only a guide:
    the hold statement decides every sale."""
    now = clock.now()
    state = page_cache.drop_state(slug, now)
    if state is None:
        abort(404)
    phase = state.phase(now)
    response = jsonify(
        drop=state.slug,
        phase=phase,
        batches=[
            {
                "id": b.id,
                "remaining": b.remaining,
                "edition_size": b.edition_size,
                "sold_out": b.remaining <= 0,
                "sold_out_for_good": b.sold >= b.edition_size,  # held units can come back
            }
            for b in state.batches
        ],
        sold_out_for_good=all(b.sold >= b.edition_size for b in state.batches),
        opens_at=iso(state.opens_at) or None,
        closes_at=iso(state.closes_at) or None,
        now=iso(state.read_at),
    )
    response.headers["Cache-Control"] = STOCK_CACHE_CONTROL
    fast_path.keep(fast_path.stock_tag(state, phase))
    return response


@bp.get("/media/<path:filename>")
def media(filename: str):
    """Uploaded images, by their server-generated names only."""
    return images.send(filename)

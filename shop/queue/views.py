"""The line a visitor waits in while a drop's waiting room is open, and the two small hooks
the drop page and the buy call (:func:`gate`, :func:`buy_gate`)."""

from __future__ import annotations

from datetime import datetime

from flask import (
    Blueprint,
    Response,
    abort,
    after_this_request,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)

from shop import auth, clock, fast_path, limits, metrics, page_cache, templating, waiting_room
from shop.errors import LoginRequired, error_response, wants_json
from shop.extensions import db
from shop.models import Drop

bp = Blueprint("queue", __name__)

YOUR_TURN = "It's your turn: choose how many and buy."
NOT_YOUR_TURN = (
    "This drop has a waiting room open, and it isn't your turn to buy yet (or your turn has "
    "passed). Join the line: your place is kept on every device."
)


@bp.get("/drops/<slug>/queue")
@limits.queue
def line(slug: str):
    """Where a signed-in visitor waits: their place, an estimate, and a page that reloads itself
    until it is their turn (then on to the drop page) or the drop is sold out for good. The
    drop page answers the same for a visitor without a pass (:func:`gate`); this address is
    where a refused buy and a bookmark lead.

    The page a waiting crowd reloads every few seconds, so it reads no database when warm: the
    drop's numbers come from the shared state (``page_cache.drop_state``), the page is a shell
    rendered once per content version for every process, and the visitor's place, nav and
    refresh are filled in from the line and their session."""
    now = clock.now()
    state = page_cache.drop_state(slug, now)
    if state is None:
        abort(404)
    drop = waiting_room.room_drop(state)
    drop_page = url_for("storefront.drop", slug=slug)
    if not drop.is_live(state, now):
        return redirect(drop_page, 303)
    buyer = auth.buyer()
    if buyer is None:
        flash(LoginRequired.message, "info")
        return redirect(url_for("account.login", next=request.path), 303)
    check = _pass(drop.id, buyer.id, now_ms=clock.ms(now))
    answer = _in_line(drop, state, buyer.id, check, now)
    if answer is None:  # the room is not open (or out of reach): the drop page
        return redirect(drop_page, 303)
    if isinstance(answer, Response):
        return answer
    flash(YOUR_TURN, "success")
    response = redirect(drop_page, 303)
    _give_pass(response, drop.id, buyer.id, answer)
    return response


def _in_line(
    drop: waiting_room.RoomDrop,
    state: page_cache.DropState,
    customer_id: int,
    check: waiting_room.PassCheck,
    now: datetime,
) -> Response | waiting_room.Turn | None:
    """A visit to the line of a live drop by a visitor whose pass (``check``) does not let
    them in: the sold-out answer (409) when nothing is left, else their place taken or found
    and the line moved on — the line page with their pass while they wait, their ``Turn``
    when it has come (the caller lets them in). None when the room is not open."""
    now_ms = clock.ms(now)
    stock = waiting_room.stock_of(state)
    if stock.sold_out:  # nobody waits for nothing: no place is taken
        if not waiting_room.is_open(drop, drop.batch_ids, now_ms=now_ms):
            return None
        return Response(_page("queue/sold_out.html", drop, state.version, now), 409)
    bad_cookie = check.present and not check.valid
    turn = waiting_room.visit(drop, customer_id, stock, now_ms=now_ms, requeue=bad_cookie)
    if turn is None:
        return None
    metrics.queue_visit(turn.waiting, admitted=turn.admitted)
    if turn.admitted:
        return turn
    refresh = waiting_room.refresh_seconds(turn, stock)
    place = {
        "drop": drop,
        "turn": turn,
        "stock": stock,
        "wait": waiting_room.wait_seconds(turn) if stock.free > 0 else None,
        "refresh": refresh,
        "bad_cookie": bad_cookie,
        "pass_minutes": current_app.config["SHOP_ROOM_PASS_MINUTES"],
        "hold_minutes": current_app.config["SHOP_HOLD_MINUTES"],
    }
    response = Response(
        _page(
            "queue/line.html",
            drop,
            state.version,
            now,
            refresh=str(refresh),
            alert=templating.render_piece("queue/_alert.html", **place),
            line=templating.render_piece("queue/_line.html", **place),
        )
    )
    response.headers["Cache-Control"] = "private, no-store"
    _give_pass(response, drop.id, customer_id, turn)
    return response


def _page(template: str, drop: waiting_room.RoomDrop, version: int, now, **own: str) -> str:
    """``template`` as a shell shared by every visitor of this content version, filled with
    this visitor's ``own`` pieces, nav and flashes."""
    shell = page_cache.rendered(
        drop.slug,
        template,
        str(version),
        lambda: page_cache.shell(template, drop=drop),
    )
    return page_cache.filled_for_visitor(shell, now, **own)


def gate(drop: Drop, state: page_cache.DropState) -> Response | None:
    """The drop page's hook: a signed-in visitor of a live drop whose room is open and who has
    no pass to buy is in the line there and then — the drop page answers what the queue page
    would (:func:`_in_line`), so a crowd's first request is its last until the page reloads.
    When their turn has come they get the drop page with their pass and "It's your turn".
    Everyone else gets the drop page (None)."""
    buyer = auth.buyer()
    now = clock.now()
    if buyer is None or not drop.is_live(now):
        return None
    now_ms = clock.ms(now)
    batch_ids = [batch.id for batch in drop.batches]
    asked = request.environ.get(fast_path.ROOM_ASKED)  # the fast path counted this visit
    if not (asked if asked is not None else waiting_room.is_open(drop, batch_ids, now_ms=now_ms)):
        return None
    check = _pass(drop.id, buyer.id, now_ms=now_ms)
    if check.admitted_until:
        return None
    answer = _in_line(waiting_room.room_drop(state), state, buyer.id, check, now)
    if answer is None or isinstance(answer, Response):
        return answer
    flash(YOUR_TURN, "success")

    @after_this_request
    def let_in(response: Response) -> Response:
        _give_pass(response, drop.id, buyer.id, answer)
        return response

    return None


def _pass(drop_id: int, customer_id: int, *, now_ms: int) -> waiting_room.PassCheck:
    """What the visitor's cookie for the drop's line says (``waiting_room.read_pass``)."""
    return waiting_room.read_pass(
        request.cookies.get(waiting_room.cookie_name(drop_id)),
        drop_id=drop_id,
        customer_id=customer_id,
        now_ms=now_ms,
    )


def _give_pass(response: Response, drop_id: int, customer_id: int, turn) -> None:
    """The visitor's place (and their turn, when it came) in its signed cookie."""
    response.set_cookie(
        waiting_room.cookie_name(drop_id),
        waiting_room.issue_pass(drop_id, customer_id, turn),
        max_age=waiting_room.PLACE_HOURS * 3600,
        path="/",
        secure=request.is_secure,
        httponly=True,
        samesite="Lax",
    )


def buy_gate(drop_id: int | None, customer_id: int) -> Response | None:
    """The buy's hook, given the drop whose room is open for the batch
    (``waiting_room.before_buy``): None when the buyer may go on (no room open, or their turn:
    it is then used), a 403 page when the room is open and it is not their turn."""
    if drop_id is None:
        return None
    now_ms = clock.ms(clock.now())
    check = _pass(drop_id, customer_id, now_ms=now_ms)
    if check.admitted_until:
        waiting_room.turn_used(drop_id, customer_id, now_ms=now_ms)
        return None
    if wants_json():
        return error_response(403, "not_your_turn", NOT_YOUR_TURN)
    drop = db.session.get(Drop, drop_id)
    return Response(render_template("queue/skipped.html", drop=drop, message=NOT_YOUR_TURN), 403)

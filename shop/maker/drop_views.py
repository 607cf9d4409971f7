"""The maker console: drops — create, edit, open, close, their live numbers and the report
after the drop."""

from __future__ import annotations

from datetime import datetime

from flask import (
    Response,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from shop import (
    audit,
    charts,
    clock,
    draws,
    drop_report,
    drops,
    exports,
    numbers,
    reports,
    timezones,
    waiting_room,
)
from shop.auth import maker_required
from shop.errors import InvalidInput
from shop.extensions import db
from shop.forms import ButtonForm, invalid_status
from shop.maker import forms
from shop.maker.views import bp, local_time, on_error, utc_time
from shop.models import Drop
from shop.models.drop import CLOSED


@bp.get("/drops", endpoint="drops")
@maker_required
def drops_list():
    now = clock.now()
    return render_template(
        "maker/drops.html", drops=reports.drop_summaries(current_user, now), now=now
    )


def _drop_details(form: forms.DropForm) -> drops.DropDetails:
    return drops.DropDetails(
        title=form.title.data,
        slug=form.slug.data or "",
        story=form.story.data or "",
        batch_ids=list(form.batches.data or []),
        opens_at=utc_time(form.opens_local.data),
        closes_at=utc_time(form.closes_local.data),
        allow_promotion_codes=bool(form.allow_promotion_codes.data),
        mode=form.mode.data or "sale",
    )


@bp.route("/drops/new", methods=["GET", "POST"])
@maker_required
def new_drop():
    form = forms.DropForm()
    form.set_batch_choices(drops.assignable_batches(current_user))
    preselected = numbers.parse_whole(request.args.get("batch"), low=1)
    if request.method == "GET" and preselected is not None:
        form.batches.data = [preselected]

    def page(error: str | None = None):
        return render_template("maker/drop_form.html", form=form, drop=None, error=error)

    if not form.validate_on_submit():
        return page(), invalid_status(form)
    on_error(lambda e: page(e.message))
    drop = drops.create_drop(current_user, _drop_details(form), actor=current_user, now=clock.now())
    db.session.commit()
    flash("Draft saved. Customers can't see it until you open it.", "success")
    return redirect(url_for("maker.drop", drop_id=drop.id), 303)


@bp.get("/drops/<int:drop_id>")
@maker_required
def drop(drop_id: int):
    found = drops.drop_for(current_user, drop_id)
    now = clock.now()
    return render_template(
        "maker/drop.html",
        drop=found,
        now=now,
        phase=found.phase(now),
        stats=reports.live_stats(found, now, recent=5),
        trail=audit.drop_trail(found),
        room_waiting=waiting_room.waiting(found.id) if found.is_live(now) else 0,
        entries=draws.entry_counts(found) if found.is_draw else {},
    )


@bp.post("/drops/<int:drop_id>/waiting-room")
@maker_required
def drop_waiting_room(drop_id: int):
    """The drop's waiting room: automatic, on or off; takes effect on the next visit."""
    found = drops.drop_for(current_user, drop_id)
    if ButtonForm().validate_on_submit():
        on_error(lambda e: _back_to_drop(found.id, e.message))
        waiting_room.set_mode(found, request.form.get("mode", ""), actor=current_user)
        db.session.commit()
        waiting_room.apply_mode(found)
        flash(f"Waiting room: {waiting_room.MODE_NAMES[found.waiting_room].lower()}.", "success")
    return redirect(url_for("maker.drop", drop_id=found.id), 303)


def _back_to_drop(drop_id: int, message: str):
    flash(message, "error")
    return redirect(url_for("maker.drop", drop_id=drop_id), 303)


@bp.route("/drops/<int:drop_id>/edit", methods=["GET", "POST"])
@maker_required
def edit_drop(drop_id: int):
    found = drops.drop_for(current_user, drop_id)
    form = forms.DropForm(obj=found)
    form.set_batch_choices(drops.assignable_batches(current_user, found))
    if request.method == "GET":
        form.batches.data = [b.id for b in found.batches]
        form.opens_local.data = local_time(found.opens_at)
        form.closes_local.data = local_time(found.closes_at)

    def page(error: str | None = None):
        fresh = drops.drop_for(current_user, drop_id)
        return render_template("maker/drop_form.html", form=form, drop=fresh, error=error)

    if not form.validate_on_submit():
        return page(), invalid_status(form)
    on_error(lambda e: page(e.message))
    drops.update_drop(found, _drop_details(form), actor=current_user, now=clock.now())
    db.session.commit()
    flash("Drop saved.", "success")
    return redirect(url_for("maker.drop", drop_id=found.id), 303)


def _preset_when(form, planned: datetime | None, now: datetime) -> None:
    """Start the confirm form on the time already planned, if it is still ahead."""
    ahead = planned if planned is not None and planned > now else None
    form.when.data = "later" if ahead else "now"
    form.at.data = local_time(ahead)


def _when(form, now: datetime) -> datetime | None:
    """``None`` for "now", else the future UTC time the maker entered in their zone."""
    if form.when.data != "later":
        return None
    if form.at.data is None:
        raise InvalidInput("Enter the date and time, or choose “now”.")
    at = timezones.to_utc(form.at.data, current_user.timezone)
    if at <= now:
        raise InvalidInput("That time has already passed; choose a later one or “now”.")
    return at


@bp.route("/drops/<int:drop_id>/open", methods=["GET", "POST"])
@maker_required
def open_drop(drop_id: int):
    def done(found: Drop, now: datetime):
        if found.is_draw and found.in_window(now):
            flash(f"{found.title} is open. Customers can enter the draw now.", "success")
            return redirect(url_for("maker.drop", drop_id=found.id), 303)
        if found.is_live(now):
            flash(f"{found.title} is open. Customers can buy now.", "success")
            return redirect(url_for("maker.live_drop", drop_id=found.id), 303)
        flash(f"{found.title} is scheduled. It opens on its own at the time you chose.", "success")
        return redirect(url_for("maker.drop", drop_id=found.id), 303)

    return _change_when(drop_id, "open", forms.OpenDropForm(), drops.open_drop, done)


@bp.route("/drops/<int:drop_id>/close", methods=["GET", "POST"])
@maker_required
def close_drop(drop_id: int):
    def done(found: Drop, now: datetime):
        if found.state == CLOSED:
            flash(
                f"{found.title} is closed. Customers already checking out can finish paying "
                "until their hold runs out.",
                "success",
            )
        else:
            flash(f"{found.title} will close on its own at the time you chose.", "success")
        return redirect(url_for("maker.drop", drop_id=found.id), 303)

    return _change_when(drop_id, "close", forms.CloseDropForm(), drops.close_drop, done)


def _change_when(drop_id: int, step: str, form, change, done):
    """The ``open`` and ``close`` steps: confirm, now or at a time, then ``change`` the drop;
    ``done`` answers after the commit. The closing page also shows who is still in checkout."""
    found = drops.drop_for(current_user, drop_id)
    now = clock.now()
    if request.method == "GET":
        _preset_when(form, found.opens_at if step == "open" else found.closes_at, now)

    def page(error: str | None = None):
        fresh = drops.drop_for(current_user, drop_id)
        n = clock.now()
        stats = reports.live_stats(fresh, n) if step == "close" else None
        return render_template(
            f"maker/confirm_{step}.html", form=form, drop=fresh, now=n, stats=stats, error=error
        )

    if not form.validate_on_submit():
        return page(), invalid_status(form)
    on_error(lambda e: page(e.message))
    change(found, actor=current_user, now=now, at=_when(form, now))
    db.session.commit()
    return done(found, now)


def _confirmed_drop_change(drop_id: int, change, done: str):
    """A one-click change to a drop behind the confirm form; back to the drop either way."""
    found = drops.drop_for(current_user, drop_id)
    if ButtonForm().validate_on_submit():
        change(found, actor=current_user, now=clock.now())
        db.session.commit()
        flash(done, "success")
    return redirect(url_for("maker.drop", drop_id=found.id), 303)


@bp.post("/drops/<int:drop_id>/batches/<int:batch_id>/line-up")
@maker_required
def line_up(drop_id: int, batch_id: int):
    """Line a batch up behind an earlier one of its product (``after``), or undo it."""
    found = drops.drop_for(current_user, drop_id)
    if ButtonForm().validate_on_submit():
        after = numbers.parse_whole(request.form.get("after"), low=1)
        batch = drops.line_up(found, batch_id, after, actor=current_user, now=clock.now())
        db.session.commit()
        if batch.follows is not None:
            flash(
                f"Batch No. {batch.number} goes on sale when No. {batch.follows.number} sells out.",
                "success",
            )
        else:
            flash(f"Batch No. {batch.number} goes on sale when the drop opens.", "success")
    return redirect(url_for("maker.drop", drop_id=found.id), 303)


@bp.post("/drops/<int:drop_id>/unschedule")
@maker_required
def unschedule_drop(drop_id: int):
    return _confirmed_drop_change(
        drop_id,
        drops.unschedule_drop,
        "Back to draft. It won't open until you open or schedule it again.",
    )


@bp.post("/drops/<int:drop_id>/keep-open")
@maker_required
def cancel_close(drop_id: int):
    return _confirmed_drop_change(
        drop_id,
        drops.cancel_scheduled_close,
        "The closing time is removed; the drop stays open until you close it.",
    )


@bp.get("/drops/<int:drop_id>/live")
@maker_required
def live_drop(drop_id: int):
    found = drops.drop_for(current_user, drop_id)
    now = clock.now()
    return render_template(
        "maker/live.html", drop=found, stats=reports.live_stats(found, now), now=now
    )


@bp.get("/drops/<int:drop_id>/live.json")
@maker_required
def live_drop_data(drop_id: int):
    """What the live page polls: the numbers, and the panel re-rendered from the same template."""
    found = drops.drop_for(current_user, drop_id)
    now = clock.now()
    stats = reports.live_stats(found, now)
    response = jsonify(
        html=render_template("maker/_live_panel.html", drop=found, stats=stats, now=now),
        **stats.as_json(),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/drops/<int:drop_id>/report", endpoint="drop_report")
@maker_required
def drop_report_page(drop_id: int):
    """The report after a drop: holds and their outcomes, refusals, buyers, money, countries
    and units per minute, per batch and for the drop."""
    found = drops.drop_for(current_user, drop_id)
    now = clock.now()
    report = drop_report.drop_report(found, now)
    return render_template(
        "maker/report.html",
        drop=found,
        report=report,
        chart=charts.bar_chart([(m.start, m.taken) for m in report.minutes]),
        groups=drop_report.REASON_GROUPS,
        reasons=drop_report.REASON_LABELS,
        now=now,
    )


@bp.get("/drops/<int:drop_id>/report.csv", endpoint="drop_report_csv")
@maker_required
def drop_report_csv(drop_id: int):
    found = drops.drop_for(current_user, drop_id)
    body = exports.report_csv(drop_report.drop_report(found, clock.now()))
    return Response(
        "\ufeff" + body,  # a BOM so spreadsheets read the file as UTF-8
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="report-{found.slug}.csv"',
            "Cache-Control": "no-store",
        },
    )

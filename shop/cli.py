"""``flask --app wsgi shop …``: demo data, accounts, drops, the worker and the dev server.

What a command changes in a maker's shop is audited with the actor ``cli`` (``audit.CLI``).
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from shop import audit, clock, draws, drops, ledger, money, reports, sweeper, users
from shop.errors import ShopError
from shop.extensions import db
from shop.models import Drop
from shop.models.user import CUSTOMER, MAKER


@click.group()
def shop() -> None:
    """Small Batch commands."""


def _fail(message: str) -> None:
    db.session.rollback()
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt(
        "Password", hide_input=True, confirmation_prompt=True, default="", show_default=False
    )


def _create_account(
    email: str, role: str, password_stdin: bool, name: str, *, admin: bool = False
) -> None:
    password = _read_password(password_stdin)
    try:
        user = users.register(email, password, display_name=name, role=role)
    except ShopError as error:
        _fail(error.message)
        return
    user.is_admin = admin
    audit.record(
        "account.created",
        actor=audit.CLI,
        maker=user if role == MAKER else None,
        detail=f"{'operator' if admin else role} {user.email}",
    )
    db.session.commit()
    click.echo(f"Created {'operator' if admin else role} {user.email}")


def _account_options(command):
    """EMAIL, ``--name`` and ``--password-stdin``: what every create-… command takes."""
    command = click.option(
        "--password-stdin", is_flag=True, help="Read the password from standard input."
    )(command)
    command = click.option(
        "--name", default="", help="Display name (defaults to the email's local part)."
    )(command)
    return click.argument("email")(command)


@shop.command("create-maker")
@_account_options
@with_appcontext
def create_maker(email: str, name: str, password_stdin: bool) -> None:
    """Create a maker account."""
    _create_account(email, MAKER, password_stdin, name)


@shop.command("create-admin")
@_account_options
@with_appcontext
def create_admin(email: str, name: str, password_stdin: bool) -> None:
    """Create the shop's operator: invites and suspends makers at /operator."""
    _create_account(email, CUSTOMER, password_stdin, name, admin=True)


@shop.command("create-customer")
@_account_options
@with_appcontext
def create_customer(email: str, name: str, password_stdin: bool) -> None:
    """Create a customer account."""
    _create_account(email, CUSTOMER, password_stdin, name)


@shop.command()
@click.option(
    "--reset",
    is_flag=True,
    help="Delete every account, drop and order first: the demo starts again. Not in production.",
)
@with_appcontext
def demo(reset: bool) -> None:
    """Load the demo shop (idempotent) and print the demo logins."""
    from shop import demo as demo_data

    if reset:
        if current_app.config.get("ENV_NAME") == "production":
            _fail("--reset deletes every row; it is refused in production")
        demo_data.reset(now=clock.now())
        db.session.commit()
        click.echo("Demo reset: everything deleted and the demo loaded afresh.")
    else:
        created = demo_data.load(now=clock.now())
        db.session.commit()
        click.echo(
            "Demo data loaded." if created else "Demo data already present; nothing changed."
        )
    for role, email, password in demo_data.LOGINS:
        click.echo(f"  {role:<9} {email}  password: {password}")


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. 2026-12-01T18:00:00+00:00")
    return clock.as_utc(parsed)


def _drop(slug: str) -> Drop:
    found = db.session.scalar(select(Drop).where(Drop.slug == slug))
    if found is None:
        _fail(f"no drop with slug {slug!r}")
    assert found is not None
    return found


def _change_drop(slug: str, change, at: str | None) -> Drop:
    """Open or close the drop ``slug`` now, or schedule it for ``at``; commit or fail."""
    drop = _drop(slug)
    try:
        change(drop, actor=audit.CLI, now=clock.now(), at=_parse_at(at))
    except ShopError as error:
        _fail(error.message)
    db.session.commit()
    return drop


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "-"


@shop.command("open-drop")
@click.argument("slug")
@click.option("--at", "at", help="ISO 8601 time to open at (default: now).")
@with_appcontext
def open_drop(slug: str, at: str | None) -> None:
    """Open a drop now, or schedule its opening."""
    drop = _change_drop(slug, drops.open_drop, at)
    click.echo(f"{slug}: {drop.state}, opens {_iso(drop.opens_at)}")


@shop.command("close-drop")
@click.argument("slug")
@click.option("--at", "at", help="ISO 8601 time to close at (default: now).")
@with_appcontext
def close_drop(slug: str, at: str | None) -> None:
    """Close a drop now, or schedule its closing."""
    drop = _change_drop(slug, drops.close_drop, at)
    click.echo(f"{slug}: {drop.state}, closes {_iso(drop.closes_at)}")


@shop.command()
@click.argument("slug")
@with_appcontext
def draw(slug: str) -> None:
    """Run a draw drop's draw now that its entries have closed (once: the worker does it too)."""
    found = _drop(slug)
    try:
        drawn = draws.run_draw(found, now=clock.now())
    except ShopError as error:
        _fail(error.message)
        return
    audit.record(
        "drop.drawn",
        actor=audit.CLI,
        drop=found,
        detail=f"{drawn.winners} drawn for {drawn.units} units, {drawn.not_drawn} not drawn",
    )
    db.session.commit()
    click.echo(
        f"{slug}: drawn — {drawn.winners} winners for {drawn.units} units, "
        f"{drawn.not_drawn} not drawn; seed published at /drops/{slug}/draw"
    )


@shop.command()
@with_appcontext
def sweep() -> None:
    """One pass: release expired holds that Stripe confirms can no longer be paid."""
    counts = sweeper.sweep(clock.now())
    click.echo(", ".join(f"{name}: {count}" for name, count in counts.items()))


@shop.command("ledger")
@click.option("--check", "check", is_flag=True, required=True, help="Reconcile every batch.")
@with_appcontext
def ledger_check(check: bool) -> None:
    """Prove every batch's counters from its orders and units: one line per batch, a line for
    every mismatch naming the batch and the numbers; exit 1 on any (the result is kept for the
    maker console, as the worker's daily check is)."""
    results = ledger.check(db.session.connection())
    for result in results:
        click.echo(result.line())
    ledger.record(results, now=clock.now())
    db.session.commit()
    mismatched = sum(1 for result in results if result.problems)
    click.echo(f"{len(results)} batches checked, {mismatched} did not reconcile.")
    if mismatched:
        sys.exit(1)


@shop.group()
def images() -> None:
    """Batch images: where their bytes are stored."""


@images.command("migrate")
@with_appcontext
def migrate_images() -> None:
    """Move pictures uploaded before images lived in the store (files in SHOP_UPLOAD_DIR) into
    it, one commit each; safe to run again, on any host. Exit 1 when a file was not found."""
    from shop import image_store

    directory = Path(current_app.config["SHOP_UPLOAD_DIR"])
    store = current_app.config["SHOP_IMAGE_STORE"]
    counts = {image_store.MOVED: 0, image_store.ALREADY: image_store.already_stored()}
    missing = []
    for image_id in image_store.waiting():
        outcome = image_store.move_upload(image_id, directory)
        db.session.commit()
        if outcome == image_store.MISSING:
            missing.append(image_id)
        else:
            counts[outcome] += 1
    for image_id in missing:
        click.echo(f"Missing: picture {image_id}'s file is not in {directory}", err=True)
    click.echo(
        f"Images: {counts[image_store.MOVED]} moved into the {store} store, "
        f"{counts[image_store.ALREADY]} already there, {len(missing)} missing."
    )
    if missing:
        sys.exit(1)


@shop.command("unrecognised-payments")
@click.option("--limit", type=int, default=100, show_default=True)
@with_appcontext
def unrecognised_payments(limit: int) -> None:
    """List paid Checkout Sessions this shop did not create (recorded, never refunded)."""
    found = reports.unrecognised_payments(limit=limit)
    if not found:
        click.echo("No unrecognised payments.")
        return
    for payment in found:
        amount = (
            money.format_money(payment.amount_total, payment.currency)
            if payment.amount_total is not None and payment.currency
            else "amount unknown"
        )
        click.echo(
            f"{payment.recorded_at:%Y-%m-%d %H:%M} UTC  {payment.session_id}  {amount}  "
            f"payment {payment.payment_intent_id or '-'}  "
            f"reference {payment.client_reference_id or '-'}  "
            f"metadata order {payment.metadata_order or '-'}"
        )


@shop.command()
@click.option("--interval", type=float, default=None, help="Seconds between sweeps.")
@click.option("--passes", type=int, default=0, help="Stop after this many sweeps (0: forever).")
@click.option("--once", is_flag=True, help="One pass of every job, then exit (1 if one failed).")
@with_appcontext
def worker(interval: float | None, passes: int, once: bool) -> None:
    """Sweep expired holds and send the outbox (safe to run several: they split the work).
    SIGTERM finishes the pass in progress, then exits 0."""
    from shop import worker as jobs

    shutdown = jobs.Shutdown()
    shutdown.install()
    if once:
        report = jobs.run_pass(clock.now())
        for line in report.lines:
            click.echo(line)
        for problem in report.problems:
            click.echo(f"FAILED: {problem}", err=True)
        sys.exit(0 if report.ok else 1)
    sweep_every = interval if interval is not None else current_app.config["SHOP_SWEEP_SECONDS"]
    poll = min(current_app.config["SHOP_MAIL_POLL_SECONDS"], sweep_every)
    next_sweep, sweeps = 0.0, 0
    while (passes == 0 or sweeps < passes) and not shutdown.requested:
        due = jobs.SWEEP_PASS if time.monotonic() >= next_sweep else jobs.POLL_PASS
        if "sweep" in due:
            next_sweep, sweeps = time.monotonic() + sweep_every, sweeps + 1
        report = jobs.run_pass(clock.now(), jobs=due)
        for line in [*report.lines, *report.problems] if report.activity or report.problems else []:
            click.echo(line)
        if (passes == 0 or sweeps < passes) and shutdown.wait(poll):
            break


@shop.command()
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@with_appcontext
def serve(host: str, port: int) -> None:
    """Run the development shop, with the local Stripe emulator and the sweeper."""
    from shop import devserver

    devserver.run(current_app._get_current_object(), host=host, port=port)  # type: ignore[attr-defined]

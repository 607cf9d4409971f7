"""The background worker's jobs, one pass at a time: the hold sweeper, due draws and the units
winners left unpaid passed down the draw order, waitlist offers, and the outbox (and the "drop
is live" notices once they are due). ``flask shop worker`` loops; ``--once`` runs one pass of
every job, for tests, cron and operators, and says what failed."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from shop import (
    audit,
    draws,
    ledger,
    metrics,
    notifications,
    outbox,
    refusal_counts,
    sweeper,
    waitlist,
)
from shop.errors import InvalidState
from shop.extensions import db
from shop.models import Drop

log = logging.getLogger(__name__)


class Shutdown:
    """SIGTERM asks the worker to stop: the pass in progress finishes (its leased holds and
    messages are settled, not left to their leases running out), then the loop exits."""

    def __init__(self) -> None:
        self._requested = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._request)

    def _request(self, _signum, _frame) -> None:
        if not self._requested.is_set():
            log.info("SIGTERM: finishing the pass in progress, then exiting")
        self._requested.set()

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` between passes, waking at once when asked to stop."""
        return self._requested.wait(seconds)


@dataclass
class Pass:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    activity: int = 0  # things done; a quiet loop prints nothing

    @property
    def ok(self) -> bool:
        return not self.problems


def run_sweeper(now: datetime, report: Pass) -> None:
    counts = sweeper.sweep(now)
    report.activity += sum(counts.values())
    report.lines.append("sweep: " + ", ".join(f"{name} {count}" for name, count in counts.items()))


def run_draws(now: datetime, report: Pass) -> None:
    """Draw every draw drop whose entries have closed (each in its own transaction: of two
    workers only one draws a drop, the other finds it drawn), then pass units winners left
    unpaid down the draw order."""
    drawn = 0
    for drop_id in draws.due_draws(now):
        drop = db.session.get(Drop, drop_id)
        try:
            result = draws.run_draw(drop, now=now)
        except InvalidState:  # another worker drew it a moment ago
            db.session.rollback()
            continue
        audit.record(
            "drop.drawn",
            actor=audit.SYSTEM,
            drop=drop,
            detail=f"{result.winners} drawn for {result.units} units, {result.not_drawn} not drawn",
        )
        db.session.commit()
        drawn += 1
        report.lines.append(f"draw {drop.slug}: {result.winners} winners, {result.units} units")
    lapsed = draws.pass_on_lapsed(now)
    db.session.commit()
    report.activity += drawn + lapsed
    report.lines.append(f"draws: {drawn} drawn, {lapsed} unpaid wins passed on")


def run_outbox(now: datetime, report: Pass) -> None:
    delivery = outbox.deliver(now)
    report.activity += delivery.sent + delivery.retrying + len(delivery.failed)
    report.lines.append(f"outbox: {delivery.summary()}")
    report.problems.extend(f"message {failed} failed for good" for failed in delivery.failed)


def run_waitlist(now: datetime, report: Pass) -> None:
    """Units set aside for waitlists offered to the next in line; lines that cannot be served
    closed."""
    offers = waitlist.offer_freed(now)
    report.activity += offers.activity
    report.lines.append(f"waitlist: {offers.summary()}")


def run_notices(now: datetime, report: Pass) -> None:
    written = notifications.notify_live_drops(now)
    report.activity += written
    report.lines.append(f"drop notices: {written} written")


def run_ledger(now: datetime, report: Pass) -> None:
    """Once a day: reconcile every batch's counters against its orders and units."""
    entry = ledger.run_if_due(now)
    if entry is None:
        return
    report.activity += 1
    report.lines.append(
        f"ledger: {entry.batches} batches checked, {entry.mismatches} did not reconcile"
    )
    report.problems.extend(line for line in entry.report.splitlines() if line)


def run_refusals(now: datetime, report: Pass) -> None:
    """Refused buy attempts counted in Redis (or this process's memory) into the database."""
    moved = refusal_counts.flush()
    report.activity += moved
    report.lines.append(f"refusals: {moved} stored")


# Notices and offers before the outbox, so a pass that writes them also starts sending them;
# offers right after the sweep, so units it freed are offered in the same pass.
JOBS = {
    "sweep": run_sweeper,
    "waitlist": run_waitlist,
    "refusals": run_refusals,
    "draws": run_draws,
    "notices": run_notices,
    "outbox": run_outbox,
    "ledger": run_ledger,
}
# What a looping worker runs every SHOP_SWEEP_SECONDS, and at every poll in between. The
# ledger is in the sweep pass and decides itself whether a day has gone by since its last check.
SWEEP_PASS = ("sweep", "draws", "waitlist", "refusals", "notices", "outbox", "ledger")
POLL_PASS = ("notices", "outbox")


def run_pass(now: datetime, *, jobs: tuple[str, ...] = tuple(JOBS)) -> Pass:
    """Each job in turn; one job's crash is reported and does not stop the others. Each job's
    run is one log line and a count (:func:`_report_job`)."""
    report = Pass()
    for name in jobs:
        started, activity, lines, problems = (
            time.perf_counter(),
            report.activity,
            len(report.lines),
            len(report.problems),
        )
        crashed = False
        try:
            JOBS[name](now, report)
        except Exception as error:  # keep going; the next pass retries
            crashed = True
            log.exception("%s job failed", name)
            db.session.rollback()
            report.problems.append(f"{name} job crashed: {type(error).__name__}: {error}")
        finally:
            db.session.remove()
        _report_job(
            name,
            seconds=time.perf_counter() - started,
            activity=report.activity - activity,
            summary="; ".join(report.lines[lines:]),
            problems=report.problems[problems:],
            crashed=crashed,
        )
    return report


def _report_job(
    name: str, *, seconds: float, activity: int, summary: str, problems: list[str], crashed: bool
) -> None:
    """Counted in the metrics; logged at INFO for every sweep and any job that did something or
    failed, a quiet outbox or notices poll (every few seconds) at DEBUG."""
    outcome = "crashed" if crashed else "problems" if problems else "ok"
    metrics.job_run(name, outcome, seconds, activity)
    level = logging.INFO if name == "sweep" or activity or problems else logging.DEBUG
    log.log(
        level,
        "job %s %s in %.0f ms: %s",
        name,
        outcome,
        seconds * 1000,
        summary or "-",
        extra={
            "fields": {
                "event": "job",
                "job": name,
                "outcome": outcome,
                "duration_ms": round(seconds * 1000, 1),
                "activity": activity,
                "summary": summary,
                "problems": problems,
            }
        },
    )

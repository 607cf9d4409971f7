"""Flash-crowd benchmark (a measurement, not a test).

    .venv/bin/python bench/flash_crowd.py [--buyers 64] [--seconds 20] [--workers 3] [--threads 4]

Starts the shop under gunicorn on a fresh PostgreSQL database, as production runs it, logs in
``--buyers`` customers through the real login form, and lets each of them buy as fast as the
shop answers (closed loop, keep-alive, from a separate asyncio load-generator process) for
``--seconds``. Measurements in the same run, on the same cores:

- hello  — ceiling: a hello-world Flask app (``bench/hello.py``) under the same gunicorn settings;
- bare   — ceiling: the least a buy can be (``bench/bare.py``): hello-world plus the hold
           statement through psycopg, no session, CSRF, limits or hooks — what the shop adds on
           top of one database round trip is the difference between this and ``buy``;
- refuse — ceiling: the least a sold-out answer can be (``bench/bare.py``'s ``/refuse``):
           hello-world plus the two round trips a refusal cannot skip (one Redis MGET, the
           session's claim in PostgreSQL) and a body the size of the sold-out page;
- sql    — ceilings: pgbench running (a) the bare conditional UPDATE on one hot row, (b) our whole
           hold statement (the CTE from ``shop.inventory``) on one batch and (c) spread over many
           batches, at the app's DB concurrency (workers x threads clients);
- buy    — the real ``POST /checkout/batches/<id>``: the hold (one statement that checks the
           buyer's session, reads the batch and takes the stock), then 303 to ``pay``;
- spread — the same with the buyers spread over many batches (no hot row: is the row the limit?);
- checkout — buy, then the browser's follow-up ``GET /checkout/orders/<id>/pay``: a Checkout
           Session created on the local Stripe emulator (its own process on the same cores),
           then 303 to Stripe — the whole way from the button to the payment page;
- soldout — the real buy endpoint after the last unit is gone: every answer is the small 409
           sold-out page (what most of a real flash crowd gets); the app on Redis, as in
           production, where that answer is shared (docs/ARCHITECTURE.md);
- page, anon, stock, queue — what a crowd that does not buy reloads: the drop page signed in and
           anonymous, the live stock JSON, the waiting room's queue page (requests per second);
- paced  — the real buy endpoint in an open loop: buyers arriving at random, on average at
           ``--paced`` shares of the holds/s the same round's ``buy`` phase reached (so it needs
           ``buy``), latency counted from each arrival — what a customer waits when the crowd
           is large but not endless.

Each phase prints holds (or requests) per second, latency percentiles, status counts, where the
CPU went, and for the shop phases the invariant check by SQL (oversold must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SHOP_ENV", "testing")

import psycopg  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from shop import claims, clock, holds, inventory  # noqa: E402
from shop.extensions import db  # noqa: E402
from shop.models import Batch  # noqa: E402
from testkit import databases, factories, invariants, rawhttp, seed, servers  # noqa: E402

BIG = 1_000_000_000  # edition size and per-customer limit: the crowd never runs out
BENCH_TOKEN = "bench-session-token"
SHOP_PHASES = {
    "buy": "the real checkout.buy: the hold, then 303 to pay",
    "spread": "the real checkout.buy with the buyers spread over many batches: no hot row at all",
    "checkout": "buy, then its follow-up GET pay: a Checkout Session on the Stripe emulator",
    "soldout": "the real checkout.buy on a sold-out batch: every answer the 409 sold-out page",
}
# Phases whose every answer is a 409 refusal.
REFUSALS = frozenset({"soldout", "refuse"})
# What a crowd that does not buy sends: each buyer GETs the same address again and again.
READ_PHASES = {
    "page": "the drop page as a signed-in customer (each buyer their own session)",
    "anon": "the drop page with no cookie (the anonymous visitor)",
    "stock": "the live stock JSON with no cookie",
    "queue": "the queue page as a signed-in customer who stays in line (Redis, as in production)",
}


# --------------------------------------------------------------------------------------------
# Where and what


def machine() -> dict:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    with psycopg.connect(databases.libpq_url(databases.admin_url())) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
        sync_commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
    gunicorn_version = subprocess.run(
        [str(servers.VENV_BIN / "gunicorn"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "postgresql": f"{pg_version} (synchronous_commit={sync_commit})",
        "python": platform.python_version(),
        "gunicorn": gunicorn_version,
    }


# --------------------------------------------------------------------------------------------
# CPU accounting from /proc: who used the cores during a phase


def _ticks() -> dict[int, tuple[str, int, int]]:
    """pid → (command name, parent pid, user+system clock ticks) for every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        found[int(entry.name)] = (name, int(fields[1]), int(fields[11]) + int(fields[12]))
    return found


def _machine_ticks() -> tuple[int, int, int]:
    """(busy, total, stolen by the hypervisor) clock ticks of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    steal = values[7] if len(values) > 7 else 0
    return sum(values) - idle, sum(values), steal


class CpuMeter:
    """CPU seconds per component between ``start()`` and each ``stop()`` (which only reads)."""

    HZ = os.sysconf("SC_CLK_TCK")

    def __init__(self, server_pid: int | None, emulator_pid: int | None) -> None:
        self.server_pid = server_pid
        self.emulator_pid = emulator_pid

    def start(self) -> None:
        self.before = _ticks()
        self.machine_before = _machine_ticks()
        self.started = time.monotonic()

    def stop(self, loadgen_cpu: float) -> dict:
        after = _ticks()
        busy1, total1, steal1 = _machine_ticks()
        wall = time.monotonic() - self.started
        used: dict[str, float] = {"shop": 0.0, "postgres": 0.0, "emulator": 0.0, "other": 0.0}
        for pid, (name, ppid, ticks) in after.items():
            delta = (ticks - self.before.get(pid, (name, ppid, 0))[2]) / self.HZ
            if delta <= 0:
                continue
            if self.server_pid is not None and pid in (self.server_pid, *self._children(after)):
                used["shop"] += delta
            elif name.startswith("postgres") or name.startswith("pgbench"):
                used["postgres"] += delta
            elif pid == self.emulator_pid:
                used["emulator"] += delta
            elif pid != os.getpid():
                used["other"] += delta
        used["loadgen"] = loadgen_cpu
        cores = len(os.sched_getaffinity(0))
        total = max(1, total1 - self.machine_before[1])
        busy = (busy1 - self.machine_before[0]) / total
        stolen = (steal1 - self.machine_before[2]) / total
        return {
            "wall_seconds": round(wall, 2),
            "cores_busy": round(busy * cores, 2),
            "cores_stolen": round(stolen * cores, 2),
            "cores_by_component": {k: round(v / wall, 2) for k, v in used.items()},
        }

    def _children(self, table: dict) -> list[int]:
        return [pid for pid, (_, ppid, _) in table.items() if ppid == self.server_pid]


# --------------------------------------------------------------------------------------------
# Load


def keep_alive(request: bytes) -> str:
    return request.replace(b"Connection: close", b"Connection: keep-alive").decode("latin-1")


def drive(
    address,
    requests: list[bytes],
    args,
    meter: CpuMeter,
    *,
    follows: list[bytes] | None = None,
    rate: float | None = None,
) -> dict:
    """Run the load generator process against ``address`` and summarise what it saw (an open
    loop at ``rate`` requests a second when given)."""
    job = {
        "host": address[0],
        "port": address[1],
        "seconds": args.seconds,
        "warmup": args.warmup,
        "requests": [keep_alive(r) for r in requests],
        "follow": [keep_alive(r) for r in follows] if follows else None,
        "rate": rate,
    }
    meter.start()
    finished = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "loadgen.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{finished.stderr}")
    raw = json.loads(finished.stdout)
    cpu = meter.stop(raw["cpu_seconds"])
    latencies = sorted(raw["latencies_ms"])
    count = len(latencies)

    def percentile(p: float) -> float:
        return round(latencies[min(count - 1, int(p * count))], 1) if count else float("nan")

    return {
        "requests_per_s": round(count / raw["seconds"], 1),
        "requests": count,
        "p50_ms": percentile(0.50),
        "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99),
        "max_ms": round(latencies[-1], 1) if count else float("nan"),
        "statuses": raw["statuses"],
        "errors": raw["errors"],
        "sample_bodies": raw["bodies"],
        "cpu": cpu,
    }


def paced_name(share: float) -> str:
    return f"paced {share:.0%}"


def round_rate(name: str, result: dict) -> float:
    """What a phase is judged by: requests/s for hello, 200s/s for a read, refusals/s for
    soldout, else holds/s."""
    if name == "hello":
        return result["requests_per_s"]
    if name in READ_PHASES:
        return successes(result, "200")
    return successes(result, "409" if name in REFUSALS else "303")


def median_round(name: str, runs: list[dict]) -> dict:
    """The round in the middle by its rate, or by its p99 for a paced phase, whose rate is set
    (the lower middle of an even count)."""
    if name.startswith("paced"):
        ordered = sorted(runs, key=lambda run: run["p99_ms"])
    else:
        ordered = sorted(runs, key=lambda run: round_rate(name, run))
    return ordered[(len(ordered) - 1) // 2]


def successes(result: dict, status: str = "303") -> float:
    """Per second: answers with ``status`` only (303: successful holds)."""
    ok = result["statuses"].get(status, 0)
    return round(ok / max(1, result["requests"]) * result["requests_per_s"], 1)


# --------------------------------------------------------------------------------------------
# Phases

# The closed-loop phases' buyers keep their connections alive, as a proxy's pool to the app
# does: each worker may hold as many as gunicorn's own default allows, not gunicorn.conf.py's
# bound (which is for a crowd arriving a connection at a time, the crowd phase), so these phases
# measure what a request costs as they always have.
KEPT_ALIVE = 1000


def closed_loop(args) -> dict:
    """The gunicorn settings of the closed-loop phases."""
    return {
        "workers": args.workers,
        "threads": args.threads,
        "reuse_port": args.reuse_port,
        "worker_connections": KEPT_ALIVE,
    }


def drive_ceiling(args, url: str, app: str, requests_for, extra_env=None) -> dict:
    """A ceiling's app (``bench.hello``, ``bench.bare``) under the shop's gunicorn settings,
    driven with ``requests_for(address)``."""
    with servers.start_gunicorn(url, app=app, extra_env=extra_env, **closed_loop(args)) as server:
        meter = CpuMeter(server.process.pid, None)
        return drive(server.address, requests_for(server.address), args, meter)


def phase_hello(args, url: str) -> dict:
    def requests_for(address) -> list[bytes]:
        # The same shape and size as a buy request: a session cookie, a CSRF token, a quantity.
        request = rawhttp.build_request(
            address,
            "POST",
            "/",
            fields={"csrf_token": "x" * 91, "quantity": 1},
            cookies={"smallbatch_session": "x" * 180},
        )
        return [request] * args.buyers

    return drive_ceiling(args, url, "bench.hello:app", requests_for)


def phase_bare(args, url: str, batch_id: int, customers, *, refuse: bool = False) -> dict:
    """The bare one-statement endpoint, each buyer posting their own id and session token; with
    ``refuse``, its bare sold-out answer (on Redis, as the shop's soldout phase)."""
    with psycopg.connect(databases.libpq_url(url)) as conn:
        tokens = dict(
            conn.execute(
                "SELECT id, session_token FROM users WHERE id = ANY(%s)",
                ([c.id for c in customers],),
            ).fetchall()
        )

    def requests_for(address) -> list[bytes]:
        # The same size as a buy request: the buyer in the form instead of in a session cookie.
        return [
            rawhttp.build_request(
                address,
                "POST",
                f"/refuse/{batch_id}" if refuse else f"/checkout/batches/{batch_id}",
                fields={
                    "csrf_token": "x" * 91,
                    "quantity": 1,
                    "customer": c.id,
                    "token": tokens[c.id],
                },
                cookies={"smallbatch_session": "x" * 100},
            )
            for c in customers
        ]

    with bench_redis() if refuse else nullcontext({}) as extra_env:
        if refuse:  # each buyer's claim mirrored, as the shop's login leaves it
            mirroring = databases.make_app(url, **extra_env)
            with mirroring.app_context():
                claims.refresh([c.id for c in customers])
                db.engine.dispose()
        return drive_ceiling(args, url, "bench.bare:app", requests_for, extra_env)


def pgbench(url: str, script: str, clients: int, seconds: float) -> dict:
    """Run pgbench; the CPU meter reads /proc shortly before it ends, while its backends live."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as file:
        file.write(script)
        file.flush()
        command = [
            shutil.which("pgbench") or "pgbench",
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(min(clients, len(os.sched_getaffinity(0)))),
            "-T",
            str(int(seconds)),
            "-f",
            file.name,
            databases.libpq_url(url),
        ]
        meter = CpuMeter(None, None)
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as process:
            time.sleep(1)  # connections made
            meter.start()
            time.sleep(max(1.0, int(seconds) - 2))
            cpu = meter.stop(0.0)
            output, errors = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"pgbench failed: {errors}")
    tps = float(re.search(r"tps = ([0-9.]+)", output).group(1))
    latency = float(re.search(r"latency average = ([0-9.]+) ms", output).group(1))
    return {"tps": round(tps, 1), "latency_avg_ms": latency, "clients": clients, "cpu": cpu}


def hold_statement_script(batch_ids: list[int], customers) -> str:
    """Our hold statement, verbatim from shop.inventory, with pgbench variables for its
    parameters, in a transaction as the app runs it (BEGIN; hold; COMMIT), on one of
    ``batch_ids``. Every customer's session token is the same seeded one (see seed_tokens)."""
    sql = holds.PG_HOLD
    sql = sql.replace(":hold_expires_at", "(now() + interval '10 minutes')")
    sql = sql.replace(":now", "now()")
    sql = sql.replace(":public_id", "substr(md5(random()::text), 1, 22)")
    sql = sql.replace(":session_token", f"'{BENCH_TOKEN}'")
    # No age or destination asked, no network counted, the hoarding rules at their defaults.
    for name, value in (
        (":age", "NULL"),
        (":birth_date", "NULL"),
        (":ship_country", "NULL"),
        (":account_cap", "6"),
        (":network_cap", "40"),  # before ":network", which it starts with
        (":network", "NULL"),
        (":lapse_limit", "3"),
        (":lapse_since", "(now() - interval '120 minutes')"),
    ):
        sql = sql.replace(name, value)
    sql = " ".join(sql.split())
    first, last = customers[0].id, customers[-1].id
    return (
        f"\\set customer_id random({first}, {last})\n"
        f"\\set batch_id random({min(batch_ids)}, {max(batch_ids)})\n"
        f"\\set quantity 1\n"
        f"BEGIN;\n{sql};\nCOMMIT;\n"
    )


def phase_sql(args, url: str, hot: int, spread: list[int], customers):
    if shutil.which("pgbench") is None:
        return {"skipped": "pgbench is not installed (apt-get install postgresql-client)"}
    clients = args.workers * args.threads  # the most DB sessions the shop uses at once
    with psycopg.connect(databases.libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_hot_row (id int PRIMARY KEY, edition_size bigint NOT NULL, "
            "sold bigint NOT NULL, held bigint NOT NULL, CHECK (sold + held <= edition_size))"
        )
        conn.execute("INSERT INTO bench_hot_row VALUES (1, %s, 0, 0)", (BIG,))
        # pgbench cannot look up each buyer's token; give them all one (logins later keep it).
        conn.execute(
            "UPDATE users SET session_token = %s WHERE id = ANY(%s)",
            (BENCH_TOKEN, [c.id for c in customers]),
        )
    scripts = {
        "hot_row_update": (
            "UPDATE bench_hot_row SET held = held + 1 "
            "WHERE id = 1 AND sold + held + 1 <= edition_size;\n"
        ),
        "hold_statement": hold_statement_script([hot], customers),
        "hold_statement_spread": hold_statement_script(spread, customers),
    }
    results: dict = {
        name: pgbench(url, script, clients, args.sql_seconds) for name, script in scripts.items()
    }
    results["spread_batches"] = len(spread)
    return results


def sold_out_batch(app) -> int:
    """A drop of three batches as a maker would list them, one of them sold out (all held)."""
    drop = seed.seed_live_drop(app, edition_size=240, limit=2, batches=2)
    batch_id = seed.add_batch(app, drop, edition_size=2, limit=2)
    with app.app_context():
        from shop.extensions import db

        batch = db.session.get(Batch, batch_id)
        inventory.hold(batch.id, 2, customer=factories.make_customer(), now=clock.now())
        db.session.commit()
        db.session.remove()
    return batch_id


def invariant_check(url: str, batch_ids: list[int]) -> dict:
    engine = create_engine(url)
    oversold, held, broken = 0, 0, []
    try:
        with engine.connect() as connection:
            for batch_id in batch_ids:
                size, sold, holding = invariants.stock(connection, batch_id)
                oversold += max(0, sold + holding - size)
                held += holding
                broken += invariants.violations(connection, batch_id)
    finally:
        engine.dispose()
    return {"oversold": oversold, "held": held, "violations": broken}


def phase_shop(
    args,
    url: str,
    paths: list[str],
    customers,
    *,
    follow: bool = False,
    stripe_api_base: str | None = None,
    emulator_pid: int | None = None,
    rate: float | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict:
    """Buyer ``i`` posts to ``paths[i % len(paths)]``, again and again (following the 303 to
    ``pay`` once when ``follow``)."""
    with servers.start_gunicorn(
        url, stripe_api_base=stripe_api_base, extra_env=extra_env, **closed_loop(args)
    ) as server:
        sessions = [rawhttp.login(server.address, c.email) for c in customers]
        requests = [
            s.form_request(paths[i % len(paths)], {"quantity": 1}) for i, s in enumerate(sessions)
        ]
        follows = [s.get_request("{location}") for s in sessions] if follow else None
        meter = CpuMeter(server.process.pid, emulator_pid)
        try:
            return drive(server.address, requests, args, meter, follows=follows, rate=rate)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\nserver log:\n{server.log()[-3000:]}") from None


def phase_read(args, url: str, name: str, slug: str, customers) -> dict:
    """``READ_PHASES[name]``: every buyer GETs one address as fast as it is answered."""
    if name == "queue":
        with bench_redis() as extra_env:
            return _read(args, url, name, f"/drops/{queue_drop(url)}/queue", customers, extra_env)
    path = f"/api/drops/{slug}/stock" if name == "stock" else f"/drops/{slug}"
    return _read(args, url, name, path, customers, {})


def _read(args, url: str, name: str, path: str, customers, extra_env: dict) -> dict:
    with servers.start_gunicorn(url, extra_env=extra_env, **closed_loop(args)) as server:
        if name in ("page", "queue"):
            sessions = [rawhttp.login(server.address, c.email) for c in customers]
            requests = [session.get_request(path) for session in sessions]
        else:
            requests = [rawhttp.build_request(server.address, "GET", path)] * args.buyers
        meter = CpuMeter(server.process.pid, None)
        try:
            return drive(server.address, requests, args, meter)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\nserver log:\n{server.log()[-3000:]}") from None


def read_drop(seeding, batches: int) -> str:
    """A live drop of ``batches`` batches that never run out, its room off (64 buyers reloading
    it would otherwise open the automatic room): what the read phases read."""
    drop = seed.seed_live_drop(seeding, edition_size=BIG, limit=BIG, batches=batches)
    with seeding.app_context():
        db.session.execute(
            text("UPDATE drops SET waiting_room = 'off' WHERE id = :id"), {"id": drop.drop_id}
        )
        db.session.commit()
        db.engine.dispose()
    return drop.slug


def queue_drop(url: str) -> str:
    """A live drop with its waiting room on and its one unit held: a line nobody leaves."""
    app = databases.make_app(url)
    drop = seed.seed_live_drop(app, edition_size=1, limit=1)
    with app.app_context():
        db.session.execute(
            text("UPDATE drops SET waiting_room = 'on' WHERE id = :id"), {"id": drop.drop_id}
        )
        inventory.hold(drop.batch_ids[0], 1, customer=factories.make_customer(), now=clock.now())
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return drop.slug


@contextmanager
def bench_redis() -> Iterator[dict[str, str]]:
    """Settings for a shop on Redis (``TEST_REDIS_URL``, else db 15) under a prefix of its own,
    whose keys are deleted afterwards, moving refusal counts to Redis as production does (the
    testing settings push each on its own request)."""
    import secrets

    import redis

    redis_url = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
    prefix = f"smallbatch-bench-{secrets.token_hex(4)}"
    try:
        yield {
            "REDIS_URL": redis_url,
            "RATELIMIT_KEY_PREFIX": prefix,
            "SHOP_REFUSALS_PUSH_SECONDS": "0.5",  # config.py's default
        }
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


class Emulator:
    """The Stripe emulator in its own process (``python -m stripe_emulator``)."""

    def __init__(self) -> None:
        self.port = servers.free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stripe_emulator", "--port", str(self.port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                rawhttp.http_request(("127.0.0.1", self.port), "GET", "/_emulator/health")
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("the Stripe emulator did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


# --------------------------------------------------------------------------------------------
# The crowd: thousands of signed-in customers arriving at random at one drop


def phase_crowd(args, url: str, *, room: bool) -> dict:
    """``--crowd`` customers (logged in before the clock starts) arrive at random over
    ``--crowd-seconds`` at a drop of ``--crowd-units`` units (limit 1 each), each playing
    ``bench/crowd.py``'s customer once; with the waiting room on or off. Gunicorn as
    production runs it (one shared listening socket, gunicorn.conf.py's bound on each worker's
    connections, unless ``--worker-connections`` says otherwise), PostgreSQL, Redis and the
    emulator."""
    from concurrent.futures import ThreadPoolExecutor

    seeding = databases.make_app(url)
    drop = seed.seed_live_drop(seeding, edition_size=args.crowd_units, limit=1)
    with seeding.app_context():
        db.session.execute(
            text("UPDATE drops SET waiting_room = :mode WHERE id = :id"),
            {"mode": "on" if room else "off", "id": drop.drop_id},
        )
        db.session.commit()
        db.session.remove()
    customers = seed.create_customers(seeding, args.crowd)
    with seeding.app_context():
        db.engine.dispose()
    emulator = Emulator()
    try:
        with (
            bench_redis() as extra_env,
            servers.start_gunicorn(
                url,
                workers=args.workers,
                threads=args.threads,
                stripe_api_base=emulator.url,
                worker_connections=args.worker_connections,
                extra_env=extra_env,
            ) as server,
        ):
            with ThreadPoolExecutor(max_workers=16) as pool:
                sessions = list(
                    pool.map(lambda c: rawhttp.login(server.address, c.email), customers)
                )
            job = {
                "host": server.address[0],
                "port": server.address[1],
                "emulator": emulator.url,
                "slug": drop.slug,
                "seconds": args.crowd_seconds,
                "pay_share": args.crowd_pay_share,
                "poll": args.crowd_poll,
                "proxy": args.crowd_proxy == "on",
                "seed": 15,
                "customers": [{"cookies": s.cookies} for s in sessions],
            }
            meter = CpuMeter(server.process.pid, emulator.process.pid)
            meter.start()
            # Read once more when the last customer has arrived: the whole run averages in the
            # quiet tail after the arrivals (the crowd's own CPU is known only at its end).
            while_arriving: dict = {}
            timer = threading.Timer(
                args.crowd_seconds, lambda: while_arriving.update(meter.stop(0.0))
            )
            timer.start()
            overflows = listen_overflows()
            finished = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "crowd.py")],
                input=json.dumps(job),
                capture_output=True,
                text=True,
            )
            timer.cancel()
            if finished.returncode != 0:
                raise RuntimeError(f"the crowd failed:\n{finished.stderr}\n{server.log()[-3000:]}")
            raw = json.loads(finished.stdout)
            cpu = meter.stop(raw["cpu_seconds"])
            overflows = listen_overflows() - overflows
    finally:
        emulator.stop()
    result = crowd_summary(raw, args.crowd_units)
    result["cpu"] = cpu
    result["cpu_while_arriving"] = while_arriving
    result["listen_overflows"] = overflows
    result["invariants"] = invariant_check(url, drop.batch_ids)
    return result


def listen_overflows() -> int:
    """Connections this host's kernel turned away because a listen queue was full (they are
    retried a second or more later, out of order): TcpExt ListenOverflows."""
    names, values = (
        line.split()
        for line in Path("/proc/net/netstat").read_text().splitlines()
        if line.startswith("TcpExt:")
    )
    return int(values[names.index("ListenOverflows")])


def crowd_summary(raw: dict, units: int) -> dict:
    """Per kind of answer (a 409 from the line or the buy is "sold out"): rate, percentiles,
    statuses; sell-out and "told" times; the rank correlation of arrival and hold order."""
    kinds: dict[str, list] = {}
    for kind, status, start, end in raw["requests"]:
        name = "sold out" if status == 409 else kind
        kinds.setdefault(name, []).append((status, (end - start) * 1000))
    seconds = raw["seconds"]
    answers = {}
    for name, items in kinds.items():
        latencies = sorted(ms for _, ms in items)

        def percentile(p: float, latencies=latencies) -> float:
            return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

        statuses: dict[str, int] = {}
        for status, _ in items:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        answers[name] = {
            "per_s": round(len(items) / seconds, 1),
            "count": len(items),
            "p50_ms": percentile(0.5),
            "p95_ms": percentile(0.95),
            "p99_ms": percentile(0.99),
            "statuses": statuses,
        }
    people = raw["customers"]
    holders = sorted((c for c in people if c["held"] is not None), key=lambda c: c["held"])
    first_arrival = min((c["arrived"] for c in people), default=0.0)
    last_hold = holders[-1]["held"] if holders else None
    # When the last paying customer started to pay: the last unit was sold for good no sooner.
    last_sale = max((c["paid"] for c in people if c.get("paid") is not None), default=None)
    told = [c["told"] for c in people if c["told"] is not None]
    # Those already there when the last sale began (later arrivals are told on arrival).
    told_waiting = [
        c["told"]
        for c in people
        if c["told"] is not None and last_sale is not None and c["arrived"] < last_sale
    ]
    polls = answers.get("stock", {}).get("count", 0)
    return {
        "answers": answers,
        "customers": len(people),
        "holds": len(holders),
        "units": units,
        "sell_out_seconds": round(last_hold - first_arrival, 2) if last_hold else None,
        "last_told_after_last_hold_s": round(max(told) - last_hold, 2)
        if told and last_hold
        else None,
        "last_told_after_last_sale_s": round(max(told_waiting) - last_sale, 2)
        if told_waiting
        else None,
        "stock_polls": polls + raw.get("proxy_hits", 0),
        "stock_polls_at_the_shop": polls,
        "fairness_rank_correlation": rank_correlation(holders, "held"),
        "first_answer_rank_correlation": rank_correlation(holders, "answered"),
        "server_errors": sum(
            n for a in answers.values() for s, n in a["statuses"].items() if s.startswith("5")
        ),
        "client_errors": raw["errors"],
        "seconds": round(seconds, 1),
    }


def rank_correlation(holders: list[dict], then: str) -> float | None:
    """Spearman's rho between the order the holders arrived in and the order of their ``then``
    (1: first come, first served)."""
    n = len(holders)
    if n < 2:
        return None
    ranks = {}
    for key in ("arrived", then):
        by_key = sorted(range(n), key=lambda i, key=key: holders[i][key])
        ranks[key] = {index: rank for rank, index in enumerate(by_key)}
    d2 = sum((ranks["arrived"][i] - ranks[then][i]) ** 2 for i in range(n))
    return round(1 - 6 * d2 / (n * (n * n - 1)), 3)


def _while_arriving(result: dict, seconds: float) -> str:
    cpu = result.get("cpu_while_arriving")
    if not cpu:
        return ""
    return (
        f" (over the run); in the first {seconds:g} s: machine {cpu['cores_busy']} busy, shop "
        f"{cpu['cores_by_component']['shop']}"
    )


def crowd_report(args, results: dict) -> None:
    for key, label in (("crowd_on", "room on"), ("crowd_off", "room off")):
        result = results.get(key)
        if result is None:
            continue
        cores = result["cpu"]["cores_by_component"]
        print(
            f"\ncrowd, {label}: {result['customers']} customers over {args.crowd_seconds:g} s, "
            f"{result['units']} units, {args.crowd_pay_share:.0%} pay (the rest give the hold "
            f"back) — {result['holds']} holds, sold out in {result['sell_out_seconds']} s, last "
            f"visitor told {result['last_told_after_last_hold_s']} s after the last hold (late "
            f"arrivals included); of those there when the last sale began, the last told "
            f"{result['last_told_after_last_sale_s']} s after it; stock JSON "
            f"polls {result['stock_polls']} ({result['stock_polls_at_the_shop']} reached the "
            f"shop; poll {args.crowd_poll:g} s, proxy micro-cache {args.crowd_proxy}); "
            f"fairness (rank correlation arrival → hold) {result['fairness_rank_correlation']}, "
            f"arrival → first answer of the drop page "
            f"{result['first_answer_rank_correlation']}; listen queue overflows "
            f"{result['listen_overflows']}; "
            f"5xx {result['server_errors']}; oversold {result['invariants']['oversold']}, "
            f"invariants {invariants_verdict(result['invariants'])}; cores: shop "
            f"{cores['shop']} postgres {cores['postgres']} crowd {cores['loadgen']}"
            f"{_while_arriving(result, args.crowd_seconds)}"
        )
        for name, answer in sorted(result["answers"].items()):
            statuses = " ".join(f"{s}: {n}" for s, n in sorted(answer["statuses"].items()))
            print(
                f"  {name:<9} {answer['per_s']:>7.1f}/s  p50 {answer['p50_ms']:>7.1f}  "
                f"p95 {answer['p95_ms']:>7.1f}  p99 {answer['p99_ms']:>7.1f} ms  {statuses}"
            )


# --------------------------------------------------------------------------------------------
# Report


def line(name: str, result: dict, ok_per_s: float | None = None) -> str:
    cpu = result["cpu"]["cores_by_component"]
    cores = " ".join(f"{k}={v}" for k, v in cpu.items() if v >= 0.01)
    cores += f" (busy {result['cpu']['cores_busy']}, stolen {result['cpu']['cores_stolen']})"
    rate = f"{result['requests_per_s']:>8.1f} req/s"
    if ok_per_s is not None:
        rate += f" ({ok_per_s:.1f} holds/s)"
    return (
        f"  {name:<6} {rate}  p50 {result['p50_ms']:>6.1f}  p95 {result['p95_ms']:>6.1f}  "
        f"p99 {result['p99_ms']:>6.1f}  max {result['max_ms']:>7.1f} ms  "
        f"statuses {result['statuses']}  cores: {cores}"
    )


def cpu_per_success(result: dict, per_s: float) -> str:
    """Milliseconds of CPU each component spent per successful hold (robust to a busy box)."""
    cores = result["cpu"]["cores_by_component"]
    return " ".join(
        f"{name} {cores[name] / per_s * 1000:.1f} ms"
        for name in ("shop", "postgres", "emulator", "loadgen")
        if per_s and cores.get(name, 0) >= 0.01
    )


def server_errors(result: dict) -> int:
    return sum(count for status, count in result["statuses"].items() if status.startswith("5"))


def invariants_verdict(check: dict) -> str:
    return "invariants hold" if not check["violations"] else str(check["violations"])


def report(args, facts: dict, results: dict) -> None:
    print("\nMachine: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    print(
        f"Settings: gunicorn -w {args.workers} --threads {args.threads}"
        f"{' --reuse-port' if args.reuse_port else ''}, {args.buyers} buyers, "
        f"{args.seconds:g} s measured after {args.warmup:g} s warm-up, SHOP_ENV=testing "
        "(rate limits off)\n"
    )
    hello = results.get("hello")
    if hello:
        print(line("hello", hello))
    bare = results.get("bare")
    if bare:
        print(line("bare", bare, successes(bare)))
    refuse = results.get("refuse")
    if refuse:
        print(line("refuse", refuse))
    for name in SHOP_PHASES:
        if name in results and name != "soldout":
            print(line(name, results[name], successes(results[name])))
    if "soldout" in results:
        print(line("soldout", results["soldout"]))
    for name in READ_PHASES:
        if name in results:
            print(line(name, results[name]))
    for name in map(paced_name, args.paced):
        if name in results:
            print(line(name, results[name], successes(results[name])))
    sql = results.get("sql", {})
    if "hot_row_update" in sql:
        labels = {
            "hot_row_update": "bare hot-row UPDATE",
            "hold_statement": "hold CTE, one batch",
            "hold_statement_spread": f"hold CTE, {sql['spread_batches']} batches",
        }
        for key, label in labels.items():
            item = sql[key]
            cores = item["cpu"]["cores_by_component"]
            print(
                f"  pgbench {label:<22} {item['tps']:>8.1f} tx/s  avg {item['latency_avg_ms']} ms"
                f"  ({item['clients']} clients; cores: postgres+pgbench={cores['postgres']} "
                f"other={cores['other']})"
            )
    elif sql:
        print(f"  pgbench: {sql['skipped']}")
    print()
    for name in ("bare", *SHOP_PHASES):
        if name not in results:
            continue
        result = results[name]
        check = results[f"{name}_invariants"]
        if name == "soldout":
            per_s = successes(result, "409")
            refused = sum(result["statuses"].values())
            ceiling = (
                f"{per_s / successes(refuse, '409'):.1%} of the bare refusal, " if refuse else ""
            )
            print(
                f"  soldout: {result['statuses'].get('409', 0)} of {refused} answers were 409, "
                f"{per_s:.1f} refusals/s, {ceiling}p99 {result['p99_ms']} ms, CPU per refusal: "
                + cpu_per_success(result, per_s)
                + ", "
                + invariants_verdict(check)
            )
            continue
        per_s = successes(result)
        parts = [f"{name}: oversold {check['oversold']}", f"5xx {server_errors(result)}"]
        if hello:
            parts.append(f"{per_s / hello['requests_per_s']:.1%} of hello-world")
        if bare and name != "bare":
            parts.append(f"{per_s / successes(bare):.1%} of the bare endpoint")
        if "hold_statement" in sql:
            parts.append(f"{per_s / sql['hold_statement']['tps']:.1%} of the hold CTE in pgbench")
        parts.append(f"p99 {result['p99_ms']} ms")
        parts.append("CPU per hold: " + cpu_per_success(result, per_s))
        parts.append(invariants_verdict(check))
        if result["errors"]:
            parts.append(f"load errors {result['errors']}")
        if result["sample_bodies"]:
            parts.append(f"sample error bodies {result['sample_bodies']}")
        print("  " + ", ".join(parts))
    for name in (*READ_PHASES, "refuse", "soldout"):
        if name in results and hello:
            ok = "409" if name in REFUSALS else "200"
            per_s = successes(results[name], ok)
            print(
                f"  {name}: {per_s:.1f} answers {ok}/s, "
                f"{per_s / hello['requests_per_s']:.1%} of hello-world, "
                f"p99 {results[name]['p99_ms']} ms, 5xx {server_errors(results[name])}"
            )
    for name in map(paced_name, args.paced):
        if name not in results:
            continue
        result, check = results[name], results["paced_invariants"]
        print(
            f"  {name}: buyers arriving {result['offered_per_s']}/s at random, "
            f"{successes(result):.1f} holds/s, waited p50 {result['p50_ms']} p95 "
            f"{result['p95_ms']} p99 {result['p99_ms']} ms, oversold {check['oversold']}, "
            f"5xx {server_errors(result)}, "
            + invariants_verdict(check)
            + (f", load errors {result['errors']}" if result["errors"] else "")
        )
    if args.rounds > 1:
        print(f"\n  Rounds (each phase above is its median round of {args.rounds}):")
        for name in ("hello", "bare", "refuse", *SHOP_PHASES, *READ_PHASES):
            if f"{name}_rounds" in results:
                rates = " / ".join(f"{rate:,.1f}" for rate in results[f"{name}_rounds"])
                print(f"    {name:<9} {rates}")
        for name in map(paced_name, args.paced):
            if f"{name}_p99s" in results:
                p99s = " / ".join(f"{p99:,.1f}" for p99 in results[f"{name}_p99s"])
                print(f"    {name} p99 (ms): {p99s}")
        for ceiling in ("hello", "bare"):
            if f"{ceiling}_rounds" in results and "buy_rounds" in results:
                ratios = [
                    f"{buy / top:.1%}"
                    for top, buy in zip(
                        results[f"{ceiling}_rounds"], results["buy_rounds"], strict=True
                    )
                ]
                print(f"    buy / {ceiling}, round by round: {' / '.join(ratios)}")
    if "hot_row_update" in sql:
        hot, spread = sql["hold_statement"]["tps"], sql["hold_statement_spread"]["tps"]
        print(
            f"  hold CTE / bare hot-row UPDATE: {hot / sql['hot_row_update']['tps']:.1%}; "
            f"hold CTE on one hot batch / spread over many: {hot / spread:.1%}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buyers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--sql-seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--no-reuse-port",
        dest="reuse_port",
        action="store_false",
        help="one shared listening socket (gunicorn's default) instead of one per worker",
    )
    parser.add_argument(
        "--worker-connections",
        type=int,
        default=None,
        help="the crowd phase's gunicorn --worker-connections (default: gunicorn.conf.py's "
        "bound, threads + 12, on one shared socket as in production; 1000, gunicorn's own "
        "default, is how the crowd ran before 2026-12-06)",
    )
    parser.add_argument(
        "--phases",
        default="hello,bare,refuse,sql,buy,spread,checkout,soldout,page,anon,stock,queue,paced",
        help="comma-separated subset of hello,bare,refuse,sql,buy,spread,checkout,soldout,page,"
        "anon,stock,queue,paced,crowd (crowd only when named)",
    )
    parser.add_argument(
        "--paced",
        type=lambda text: [float(share) for share in text.split(",")],
        default=[0.5, 0.8],
        help="for the paced phase: arrival rates as shares of the round's buy holds/s",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run hello and the shop phases this many times, interleaved, and report each "
        "phase's median round (a slow minute on a shared machine then hits one round of every "
        "phase instead of one whole phase)",
    )
    parser.add_argument("--crowd", type=int, default=5000, help="customers in the crowd phase")
    parser.add_argument("--crowd-units", type=int, default=300)
    parser.add_argument("--crowd-seconds", type=float, default=20)
    parser.add_argument("--crowd-pay-share", type=float, default=0.8)
    parser.add_argument(
        "--crowd-poll",
        type=float,
        default=1.0,
        help="seconds between a waiting customer's reads of the stock JSON, as the queue "
        "page's script does (0: customers without JavaScript)",
    )
    parser.add_argument(
        "--crowd-proxy",
        choices=("on", "off"),
        default="on",
        help="the stock JSON polls go through a micro-cache like deploy/nginx's (on) or "
        "straight to the shop (off)",
    )
    parser.add_argument(
        "--crowd-room",
        default="on,off",
        help="the crowd phase with the waiting room on, off, or both (on,off)",
    )
    parser.add_argument(
        "--page-batches",
        type=int,
        default=3,
        help="batches of the drop the read phases (page, anon, stock) read: a release of a few "
        "batches, as a crowd meets one (0: the buy phases' drop, 31 batches, as measured "
        "before 2026-12-06 20:00 UTC)",
    )
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))

    facts = machine()
    results: dict = {}
    with databases.migrated_postgres_database("smallbatch_bench") as url:
        seeding = databases.make_app(url)
        spread_count = args.workers * args.threads
        named = (*SHOP_PHASES, "bare", "sql", "paced")
        drop = seed.seed_live_drop(
            seeding, edition_size=BIG, limit=BIG, batches=len(named) + 2 * spread_count
        )
        customers = seed.create_customers(seeding, args.buyers)
        with seeding.app_context():
            from shop.extensions import db

            # The page phase measures the page: 64 buyers reloading it would otherwise open
            # the automatic waiting room, and every answer would be a 303 to the line.
            db.session.execute(
                text("UPDATE drops SET waiting_room = 'off' WHERE id = :id"), {"id": drop.drop_id}
            )
            db.session.commit()
            db.engine.dispose()
        read_slug = drop.slug
        if args.page_batches:
            read_slug = read_drop(seeding, args.page_batches)
        batches = {name: [batch_id] for name, batch_id in zip(named, drop.batch_ids, strict=False)}
        rest = drop.batch_ids[len(named) :]
        spread, batches["spread"] = rest[:spread_count], rest[spread_count:]
        batches["soldout"] = [sold_out_batch(seeding)]
        emulator = Emulator() if "checkout" in phases else None
        try:
            if "sql" in phases:
                print("pgbench ceilings …", flush=True)
                results["sql"] = phase_sql(args, url, batches["sql"][0], spread, customers)
            rounds: dict[str, list[dict]] = {}

            def check_invariants(name: str) -> None:
                """After every round: the state is cumulative, so a break stays visible."""
                check = invariant_check(url, batches[name])
                seen = results.get(f"{name}_invariants")
                if seen is None or check["oversold"] or check["violations"]:
                    results[f"{name}_invariants"] = check

            for round_no in range(1, args.rounds + 1):
                tag = f" (round {round_no} of {args.rounds})" if args.rounds > 1 else ""
                if "hello" in phases:
                    print(f"hello-world ceiling{tag} …", flush=True)
                    rounds.setdefault("hello", []).append(phase_hello(args, url))
                if "bare" in phases:
                    print(f"bare one-statement endpoint{tag} …", flush=True)
                    rounds.setdefault("bare", []).append(
                        phase_bare(args, url, batches["bare"][0], customers)
                    )
                    check_invariants("bare")
                if "refuse" in phases:
                    print(f"bare sold-out answer{tag} …", flush=True)
                    rounds.setdefault("refuse", []).append(
                        phase_bare(args, url, batches["soldout"][0], customers, refuse=True)
                    )
                for name in SHOP_PHASES:
                    if name not in phases:
                        continue
                    print(f"{name}: {SHOP_PHASES[name]}{tag} …", flush=True)
                    # The sold-out answer is shared only in Redis, as in production.
                    store = bench_redis() if name == "soldout" else nullcontext({})
                    with store as extra_env:
                        result = phase_shop(
                            args,
                            url,
                            [f"/checkout/batches/{batch_id}" for batch_id in batches[name]],
                            customers,
                            follow=name == "checkout",
                            stripe_api_base=emulator.url if emulator else None,
                            emulator_pid=emulator.process.pid if emulator else None,
                            extra_env=extra_env,
                        )
                    rounds.setdefault(name, []).append(result)
                    check_invariants(name)
                for name in READ_PHASES:
                    if name in phases:
                        print(f"{name}: {READ_PHASES[name]}{tag} …", flush=True)
                        rounds.setdefault(name, []).append(
                            phase_read(args, url, name, read_slug, customers)
                        )
                if "paced" in phases and "buy" in rounds:
                    reached = successes(rounds["buy"][-1])
                    for share in args.paced:
                        print(
                            f"paced: buyers arriving at {share:.0%} of buy's {reached:.0f} "
                            f"holds/s{tag} …",
                            flush=True,
                        )
                        result = phase_shop(
                            args,
                            url,
                            [f"/checkout/batches/{batches['paced'][0]}"],
                            customers,
                            rate=share * reached,
                        )
                        result["offered_per_s"] = round(share * reached, 1)
                        rounds.setdefault(paced_name(share), []).append(result)
                    check_invariants("paced")
            for name, runs in rounds.items():
                results[name] = median_round(name, runs)
                results[f"{name}_rounds"] = [round_rate(name, run) for run in runs]
                if name.startswith("paced"):
                    results[f"{name}_p99s"] = [run["p99_ms"] for run in runs]
            if "crowd" in phases:
                for mode in args.crowd_room.split(","):
                    print(f"crowd: {args.crowd} customers, room {mode} …", flush=True)
                    results[f"crowd_{mode}"] = phase_crowd(args, url, room=mode == "on")
        finally:
            if emulator is not None:
                emulator.stop()
    report(args, facts, results)
    crowd_report(args, results)
    if args.json:
        for key in ("hello", "bare", "refuse", *SHOP_PHASES, *map(paced_name, args.paced)):
            if key in results:
                results[key].pop("sample_bodies", None)
        args.json.write_text(
            json.dumps(
                {
                    "machine": facts,
                    "args": vars(args) | {"json": str(args.json)},
                    "results": results,
                },
                indent=2,
                default=str,
            )
        )
    failed = any(
        results[f"{n}_invariants"]["oversold"] or results[f"{n}_invariants"]["violations"]
        for n in ("bare", *SHOP_PHASES, "paced")
        if f"{n}_invariants" in results
    ) or any(
        results[key]["invariants"]["oversold"] or results[key]["invariants"]["violations"]
        for key in ("crowd_on", "crowd_off")
        if key in results
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

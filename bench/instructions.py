"""CPU instructions per request, counted by valgrind (a measurement, not a test).

    .venv/bin/python bench/instructions.py [--requests 200] [--redis] [--state-seconds 60] \
        [--limits] [--targets hello,bare,refuse,buy,drop,anon,stock,soldout,queue]
    .venv/bin/python bench/instructions.py --profile drop [--requests 200]

Throughput on a shared VM moves ±25 % between identical runs minutes apart (docs/PERFORMANCE.md),
which hides any change smaller than that. An instruction count does not move: this script runs
the app in one process under ``valgrind --tool=callgrind``, calls it directly as a WSGI server
would (no sockets, no gunicorn), and reports the instructions each request costs the app
process — PostgreSQL's share is not counted. Each figure is the difference between a run of
``--requests`` requests and a run of 40, so start-up and warm-up cancel out. The runs go two at
a time (instruction counts do not depend on what else the machine does).

- hello   — the hello-world app of the flash-crowd ceiling (``bench/hello.py``);
- bare    — the bare one-statement endpoint of the other ceiling (``bench/bare.py``): hello-world
            plus the hold statement, so ``buy`` minus ``bare`` is what the shop adds to a hold;
- refuse  — the same endpoint's bare sold-out answer (``/refuse``, needs ``--redis``): hello-world
            plus the Redis read and the claim statement a refusal cannot skip, so ``soldout``
            minus ``refuse`` is what the shop adds to a refusal;
- buy     — the real ``POST /checkout/batches/<id>`` as a logged-in customer: the hold and the 303;
- drop    — the drop page (``GET /drops/<slug>``) as a signed-in customer;
- anon    — the same page for an anonymous visitor (no cookie);
- stock   — the live stock JSON (``GET /api/drops/<slug>/stock``), no cookie;
- soldout — the buy on a sold-out batch: the 409 answer;
- queue   — the waiting room's queue page (``GET /drops/<slug>/queue``) for a signed-in
            visitor who stays in line (another drop, its room on, nobody else let in).

The app keeps what its processes share (page cache, line, counters) in its own memory, as the
embedded default does; ``--redis`` puts it in Redis (``TEST_REDIS_URL``) as in production, where
the sold-out answer is shared too (docs/ARCHITECTURE.md). Needs valgrind
(``apt-get install valgrind``) and PostgreSQL (``TEST_DATABASE_URL``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urlencode

from werkzeug.test import EnvironBuilder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SHOP_ENV", "testing")

from bench.flash_crowd import bench_redis  # noqa: E402  (after the path is set)

# Answered before Flask while the shared state they depend on is cached. Under valgrind a request
# takes ~50 ms, so state that lives a second is read afresh through Flask every ~20 requests (a
# crowd spreads that over thousands): the report says how many of the counted requests it was.
FAST_TARGETS = ("drop", "anon", "stock", "soldout")
# --limits: every limit a measured request meets counted, as in production, but never reached.
LIMITS_COUNTED = {
    "RATELIMIT_ENABLED": "1",
    **{
        f"SHOP_LIMIT_{name}_PER_{who}": "1000000 per minute"
        for name in ("BUY", "PAY", "RETURN", "QUEUE")
        for who in ("CUSTOMER", "IP")
    },
}
WARM = 20  # requests before counting starts to matter (imports, caches, prepared statements)
BASELINE = 40


def child(target: str, count: int, spec_file: str) -> None:
    """Under valgrind: ``WARM + count`` requests of ``target``, straight into the WSGI app."""
    spec = json.loads(Path(spec_file).read_text())
    if target == "hello":
        from bench.hello import app

        method, path, body, cookie, expect = "POST", "/", b"quantity=1", "", "303"
    else:
        os.environ.update(spec["env"])
        if target in ("bare", "refuse"):
            from bench.bare import app
        else:
            from shop import page_cache
            from wsgi import app

            page_cache.STATE_SECONDS = spec.get("state_seconds", page_cache.STATE_SECONDS)

        request = spec["requests"][target]
        method, path, body = request["method"], request["path"], request["body"].encode()
        cookie, expect = request["cookie"], request["expect"]
    statuses: list[str] = []
    through_flask: list[int] = []

    def start_response(status, _headers, _exc_info=None):
        statuses.append(status)

    if target not in ("hello", "bare", "refuse"):
        from flask import request_started

        request_started.connect(lambda _sender, **_extra: through_flask.append(1), weak=False)

    # One environ as a WSGI server would pass it, built once (werkzeug's builder is not what is
    # measured); each request gets it with a fresh body stream.
    template = EnvironBuilder(
        path,
        base_url="http://127.0.0.1",
        method=method,
        data=body or None,
        content_type="application/x-www-form-urlencoded" if body else None,
        headers={"Cookie": cookie} if cookie else None,
        environ_overrides={"REMOTE_ADDR": "127.0.0.1", "wsgi.multiprocess": True},
    ).get_environ()
    for _ in range(WARM + count):
        environ = {**template, "wsgi.input": io.BytesIO(body)}
        answer = app(environ, start_response)
        b"".join(answer)
        getattr(answer, "close", lambda: None)()
    if not statuses[-1].startswith(expect):
        raise SystemExit(f"{target}: expected {expect}, got {statuses[-1]}")
    print(f"through Flask: {len(through_flask)}", file=sys.stderr)


def instructions(target: str, count: int, spec_file: str) -> tuple[int, int]:
    """Instructions valgrind counted for the whole child process, and how many of its requests
    Flask answered (the rest, the fast path: shop/fast_path.py)."""
    command = [
        shutil.which("valgrind") or "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        target,
        str(count),
        spec_file,
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind run of {target} failed:\n{done.stderr[-3000:]}")
    flask = re.search(r"through Flask: (\d+)", done.stderr)
    return int(found.group(1)), int(flask.group(1)) if flask else 0


def prepare(url: str, spec_file: str, extra_env: dict[str, str]) -> None:
    """Seed a live drop (big batches, one sold out) and write the requests: one customer buys
    (their holds pile up), another, holding nothing, views the drop and meets the sold-out batch."""
    from testkit import databases, rawhttp, seed, servers

    key = secrets.token_urlsafe(32)
    # With --redis, the logins below mirror each customer's claim there as production's do.
    shared = {k: v for k, v in extra_env.items() if k in ("REDIS_URL", "RATELIMIT_KEY_PREFIX")}
    app = databases.make_app(url, SECRET_KEY=key, **shared)
    drop = seed.seed_live_drop(app, edition_size=10**9, limit=10**9, batches=2)
    sold_out = seed.add_batch(app, drop, edition_size=1, limit=1)
    # The buys pile up on a drop of their own: a buy changes its drop's numbers (and evicts its
    # shared state), which would send the page targets counted beside it back through Flask.
    bought = seed.seed_live_drop(app, edition_size=10**9, limit=10**9, batches=2)
    roomy = seed.seed_live_drop(app, edition_size=1, limit=1)
    buyer, first, visitor = seed.create_customers(app, 3)
    server = servers.start_threaded_server(app)
    try:
        rawhttp.login(server.address, first.email).buy(sold_out, 1)  # the last unit goes
        rawhttp.login(server.address, buyer.email).buy(roomy.batch_ids[0], 1)  # held: none free
        buys = _cookie_and_body(rawhttp.login(server.address, buyer.email), bought.batch_ids[0])
        bare_buyer = {"customer": first.id, "token": _session_token(app, first.id)}
        visits = _cookie_and_body(rawhttp.login(server.address, visitor.email), sold_out)
    finally:
        server.stop()
    with app.app_context():  # a line nobody leaves: its one unit is held
        from shop.extensions import db
        from shop.models import Drop

        db.session.get_one(Drop, roomy.drop_id).waiting_room = "on"
        db.session.commit()
    env = servers.server_env(
        url, base_url="http://127.0.0.1", extra={"SECRET_KEY": key, **extra_env}
    )
    spec = {
        "env": {k: v for k, v in env.items() if k not in os.environ or os.environ[k] != v},
        "requests": {
            "bare": {
                "method": "POST",
                "path": f"/checkout/batches/{bought.batch_ids[1]}",
                "body": urlencode({"csrf_token": "x" * 91, "quantity": 1, **bare_buyer}),
                "cookie": "",
                "expect": "303",
            },
            "refuse": {
                "method": "POST",
                "path": f"/refuse/{sold_out}",
                "body": urlencode({"csrf_token": "x" * 91, "quantity": 1, **bare_buyer}),
                "cookie": "",
                "expect": "409",
            },
            "buy": {"method": "POST", "path": f"/checkout/batches/{bought.batch_ids[0]}", **buys},
            "drop": {
                "method": "GET",
                "path": f"/drops/{drop.slug}",
                **visits,
                "body": "",
                "expect": "200",
            },
            "anon": {
                "method": "GET",
                "path": f"/drops/{drop.slug}",
                "cookie": "",
                "body": "",
                "expect": "200",
            },
            "stock": {
                "method": "GET",
                "path": f"/api/drops/{drop.slug}/stock",
                "cookie": "",
                "body": "",
                "expect": "200",
            },
            "soldout": {
                "method": "POST",
                "path": f"/checkout/batches/{sold_out}",
                **visits,
                "expect": "409",
            },
            "queue": {
                "method": "GET",
                "path": f"/drops/{roomy.slug}/queue",
                **visits,
                "body": "",
                "expect": "200",
            },
        },
    }
    Path(spec_file).write_text(json.dumps(spec))
    with app.app_context():
        from shop.extensions import db

        db.engine.dispose()


def _session_token(app, user_id: int) -> str:
    with app.app_context():
        from shop.extensions import db
        from shop.models import User

        return db.session.get_one(User, user_id).session_token


def _cookie_and_body(session, batch_id: int) -> dict[str, str]:
    head, _, body = session.buy_request(batch_id).partition(b"\r\n\r\n")
    cookie = re.search(rb"\r\nCookie: ([^\r\n]+)", head).group(1).decode()
    return {"cookie": cookie, "body": body.decode(), "expect": "303"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--targets", default="hello,bare,buy,drop,anon,stock,soldout")
    parser.add_argument(
        "--profile",
        metavar="TARGET",
        help="instead: profile TARGET's requests with cProfile and print where the time goes",
    )
    parser.add_argument(
        "--redis", action="store_true", help="the app on Redis (TEST_REDIS_URL), as in production"
    )
    parser.add_argument(
        "--state-seconds",
        type=float,
        help="keep the shared state this long instead of the shop's one second: at valgrind's "
        "~20 requests a second, 60 makes the fast path's refreshes through Flask as rare as in "
        "a crowd, so its own cost shows",
    )
    parser.add_argument(
        "--limits",
        action="store_true",
        help="count the rate limits as production does (their numbers raised so none trips)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        target, count, spec_file = args.child
        child(target, int(count), spec_file)
        return 0
    store = bench_redis() if args.redis else nullcontext({})
    limits_env = LIMITS_COUNTED if args.limits else {}
    if args.profile:
        with store as extra_env:
            return profile(args.profile, args.requests, extra_env | limits_env)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    from testkit import databases

    counted = args.requests - BASELINE
    targets = args.targets.split(",")
    if "refuse" in targets and not args.redis:
        parser.error("the refuse target reads Redis: add --redis")
    where = "Redis" if args.redis else "memory"
    life = f", kept {args.state_seconds:g} s" if args.state_seconds else ""
    life += ", rate limits counted" if args.limits else ""
    print(
        f"Instructions per request in the app process ({counted} requests counted, shared state "
        f"in {where}{life}):",
        flush=True,
    )
    with (
        store as extra_env,
        databases.migrated_postgres_database("smallbatch_instructions") as url,
        tempfile.NamedTemporaryFile("w", suffix=".json") as spec,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        prepare(url, spec.name, extra_env | limits_env)
        if args.state_seconds:
            written = json.loads(Path(spec.name).read_text())
            Path(spec.name).write_text(json.dumps(written | {"state_seconds": args.state_seconds}))
        runs = {
            target: [
                pool.submit(instructions, target, n, spec.name) for n in (args.requests, BASELINE)
            ]
            for target in targets
        }
        counts = {}
        for target in targets:
            (many, flask_many), (few, flask_few) = (run.result() for run in runs[target])
            counts[target] = ((many - few) // counted, flask_many - flask_few)
    hello = counts.get("hello", (0, 0))[0]
    for target, (count, flask) in counts.items():
        ratio = f"  {count / hello:6.2f} x hello" if hello else ""
        fast = f"  ({flask} of {counted} answered by Flask)" if target in FAST_TARGETS else ""
        print(f"  {target:8s} {count:>12,}{ratio}{fast}")
    return 0


def profile(target: str, count: int, extra_env: dict[str, str]) -> int:
    """``target``'s requests under cProfile, in this process: the 30 functions with the most
    time of their own (``PROFILE_SORT=cumulative`` for time with callees; ``PROFILE_CALLEES=name``
    also lists what the functions matching ``name`` call)."""
    import cProfile
    import pstats

    from testkit import databases

    with (
        databases.migrated_postgres_database("smallbatch_instructions") as url,
        tempfile.NamedTemporaryFile("w", suffix=".json") as spec,
    ):
        prepare(url, spec.name, extra_env)
        profiler = cProfile.Profile()
        profiler.runcall(child, target, count, spec.name)
    stats = pstats.Stats(profiler)
    stats.sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(30)
    if os.environ.get("PROFILE_CALLEES"):
        stats.print_callees(os.environ["PROFILE_CALLEES"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

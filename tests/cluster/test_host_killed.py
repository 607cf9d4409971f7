"""One of two app hosts killed with SIGKILL, master and workers at once, in the middle of a burst
of customers buying and paying through nginx (tests/cluster/conftest.py). The burst runs once
for the module (:func:`crash`); each test reads one consequence: every answer a customer got is
true in the database, no order paid at Stripe is lost, the counters reconcile, the other host
takes the traffic, nginx stops sending to the dead one, the worker sends each receipt once,
and a backup taken after the crash restores into a database that passes ``shop ledger
--check``."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from shop import messages
from shop.extensions import db
from testkit import databases, invariants, rawhttp, seed
from testkit.databases import require
from tests.cluster.conftest import PAY_PATH, Cluster, live_drop, tagged, wait_for
from tests.support.stripe import session_id_from

pytestmark = pytest.mark.cluster

CUSTOMERS = 48
EDITION = 30
CLIENTS = 8  # customers buying at once
KILL_AFTER = 12  # buys answered before host a dies


@dataclass
class Journey:
    """One customer's buy through nginx, then on to Stripe and paying there if it was held."""

    n: int
    customer: seed.Customer
    buy: rawhttp.Response | None = None
    buy_sent_at: float = 0.0
    pay: rawhttp.Response | None = None
    pay_sent_at: float = 0.0
    session_id: str | None = None  # paid at Stripe

    @property
    def public_id(self) -> str | None:
        held = PAY_PATH.fullmatch(self.buy.location or "") if self.buy else None
        return held.group(1) if held and self.buy.status == 303 else None  # type: ignore[union-attr]


@dataclass
class Crash:
    batch_id: int
    journeys: list[Journey]
    killed_at: float  # time.monotonic(), just before the SIGKILL
    dead_at: float  # once the host's processes were gone
    paid_orders_settled: bool
    dead: rawhttp.Address

    def orders_of(self, cluster: Cluster, customer_id: int) -> list:
        return cluster.sql(
            "SELECT public_id, state, quantity, checkout_session_id FROM orders "
            "WHERE customer_id = :customer AND batch_id = :batch",
            customer=customer_id,
            batch=self.batch_id,
        )


@pytest.fixture(scope="module")
def crash(two_hosts: Cluster) -> Crash:
    drop = live_drop(two_hosts, edition_size=EDITION, limit=1)
    customers = seed.create_customers(two_hosts.app, CUSTOMERS)
    with ThreadPoolExecutor(max_workers=6) as pool:
        sessions = list(
            pool.map(lambda c: two_hosts.login(c.email, page=f"/drops/{drop.slug}"), customers)
        )
    answered, lock, kill_now = [0], threading.Lock(), threading.Event()

    def journey(n: int) -> Journey:
        session, trip = sessions[n], Journey(n, customers[n])
        trip.buy_sent_at = time.monotonic()
        buy = session.buy_request(drop.batch_id, headers=tagged(f"buy-{n}"))
        trip.buy = session.send(buy, truncated_ok=True)
        with lock:
            answered[0] += 1
            if answered[0] == KILL_AFTER:
                kill_now.set()
        if trip.public_id is None:
            return trip
        trip.pay_sent_at = time.monotonic()
        pay = session.get_request(trip.buy.location, headers=tagged(f"pay-{n}"))
        trip.pay = session.send(pay, truncated_ok=True)
        if trip.pay.status == 303 and "/checkout/cs_" in (trip.pay.location or ""):
            trip.session_id = session_id_from(trip.pay.location)
            two_hosts.emulator.complete(trip.session_id)  # the customer pays at Stripe
        return trip

    host_a = two_hosts.hosts[0]
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        trips = [pool.submit(journey, n) for n in range(CUSTOMERS)]
        assert kill_now.wait(120), "the burst never got going"
        killed_at = time.monotonic()
        host_a.crash()
        dead_at = time.monotonic()
        journeys = [trip.result(timeout=300) for trip in trips]

    paid_at_stripe = [j.public_id for j in journeys if j.session_id]
    settled = _wait_quietly(
        lambda: (
            two_hosts.sql(
                "SELECT count(*) FROM orders WHERE public_id = ANY(:ids) AND state = 'paid'",
                ids=paid_at_stripe,
            )[0][0]
            == len(paid_at_stripe)
        ),
        timeout=90,
    )
    return Crash(drop.batch_id, journeys, killed_at, dead_at, settled, host_a.address)


def _wait_quietly(condition, *, timeout: float) -> bool:
    """Poll ``condition`` for up to ``timeout`` seconds; whether it came true (the tests say
    what did not)."""
    try:
        wait_for(condition, what="settling", timeout=timeout)
    except AssertionError:
        return False
    return True


def _from_nginx(response: rawhttp.Response) -> bool:
    """nginx's own error page (the app host never answered), not the shop's."""
    return "Small Batch" not in response.text and "nginx" in response.text


def test_the_host_died_in_the_middle_of_the_burst(two_hosts: Cluster, crash: Crash):
    a, b = (f"{host.host}:{host.port}" for host in two_hosts.hosts)
    hosts_before = {
        two_hosts.nginx.logged(f"buy-{j.n}").host
        for j in crash.journeys
        if j.buy_sent_at < crash.killed_at
    }
    started_after = [j for j in crash.journeys if j.buy_sent_at > crash.dead_at]

    assert {a, b} <= hosts_before  # both hosts sold before the crash
    assert len(started_after) >= CUSTOMERS // 3
    assert two_hosts.hosts[0].process.poll() is not None  # type: ignore[union-attr]


def test_every_answer_a_customer_got_is_true_in_the_database(two_hosts: Cluster, crash: Crash):
    dead = f"{crash.dead[0]}:{crash.dead[1]}"
    unknown = 0
    for journey in crash.journeys:
        assert journey.buy is not None
        orders = crash.orders_of(two_hosts, journey.customer.id)
        if journey.buy.status == 303:
            [(public_id, state, quantity, session_id)] = orders
            assert (public_id, quantity) == (journey.public_id, 1)
            assert state in ("held", "paid")
            assert journey.pay is not None and journey.pay.status == 303, journey.pay
            assert session_id == journey.session_id == session_id_from(journey.pay.location)
        elif journey.buy.status == 409:
            assert journey.buy.truncated or "Sold out" in journey.buy.text
            assert orders == []
        else:
            # In flight on the host that died: nginx answered, and did not send the buy to the
            # other host — it may have been held on the dead one before it died.
            unknown += 1
            assert journey.buy.status == 502 and _from_nginx(journey.buy), journey.buy.text[:300]
            assert two_hosts.nginx.logged(f"buy-{journey.n}").upstreams == (dead,)
            assert len(orders) <= 1
    assert unknown <= CLIENTS


def test_no_order_paid_at_stripe_is_lost(two_hosts: Cluster, crash: Crash):
    paid_at_stripe = {j.public_id: j.session_id for j in crash.journeys if j.session_id}
    rows = two_hosts.sql(
        "SELECT o.public_id, o.state, o.checkout_session_id, count(u.id) FROM orders o "
        "LEFT JOIN units u ON u.order_id = o.id WHERE o.batch_id = :batch "
        "GROUP BY o.public_id, o.state, o.checkout_session_id",
        batch=crash.batch_id,
    )
    paid = {
        public_id: (session_id, units)
        for public_id, state, session_id, units in rows
        if state == "paid"
    }

    assert crash.paid_orders_settled
    assert paid_at_stripe
    assert paid == {public_id: (session_id, 1) for public_id, session_id in paid_at_stripe.items()}


def test_the_counters_reconcile_after_the_crash(two_hosts: Cluster, crash: Crash):
    with two_hosts.app.app_context(), db.engine.connect() as connection:
        assert invariants.violations(connection, crash.batch_id) == []
        edition, sold, held = invariants.stock(connection, crash.batch_id)
    answered_303 = sum(1 for j in crash.journeys if j.public_id)

    assert sold == sum(1 for j in crash.journeys if j.session_id)
    assert answered_303 <= sold + held <= edition
    check = two_hosts.flask("shop", "ledger", "--check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_other_host_answered_everything_sent_after_the_crash(two_hosts: Cluster, crash: Crash):
    survivor = f"{two_hosts.hosts[1].host}:{two_hosts.hosts[1].port}"
    after = [
        (label, sent_at)
        for journey in crash.journeys
        for label, sent_at in (
            (f"buy-{journey.n}", journey.buy_sent_at),
            (f"pay-{journey.n}", journey.pay_sent_at),
        )
        if sent_at > crash.dead_at
    ]
    logged = [two_hosts.nginx.logged(label) for label, _ in after]

    assert logged
    assert [entry for entry in logged if entry.host != survivor] == []
    assert all(entry.status in (303, 409) for entry in logged)


def test_the_dead_hosts_readyz_fails_and_nginx_stops_sending_to_it(
    two_hosts: Cluster, crash: Crash
):
    dead, alive = two_hosts.hosts
    with pytest.raises(ConnectionRefusedError):
        rawhttp.http_request(dead.address, "GET", "/readyz", timeout=5)
    assert rawhttp.http_request(alive.address, "GET", "/readyz", timeout=10).status == 200

    tls = two_hosts.nginx.tls()
    probes = [
        rawhttp.http_request(
            two_hosts.nginx.address, "GET", "/healthz", headers=tagged(f"probe-{n}"), tls=tls
        )
        for n in range(10)
    ]

    assert [probe.status for probe in probes] == [200] * 10
    tried = [two_hosts.nginx.logged(f"probe-{n}").upstreams for n in range(10)]
    dead_address = f"{dead.host}:{dead.port}"
    # nginx left the dead host out; at most one request sees whether it is back (fail_timeout).
    assert sum(1 for upstreams in tried if dead_address in upstreams) <= 1
    assert all(upstreams[-1] == f"{alive.host}:{alive.port}" for upstreams in tried)


def test_the_worker_sends_each_paid_order_one_receipt(two_hosts: Cluster, crash: Crash):
    paid = [j.public_id for j in crash.journeys if j.session_id]

    def receipts() -> list:
        return two_hosts.sql(
            "SELECT o.public_id, count(m.id), bool_and(m.state = 'sent') FROM orders o "
            "JOIN messages m ON m.order_id = o.id AND m.kind = :kind "
            "WHERE o.public_id = ANY(:ids) GROUP BY o.public_id",
            kind=messages.ORDER_PAID,
            ids=paid,
        )

    def all_sent() -> list | None:
        found = receipts()
        return found if len(found) == len(paid) and all(sent for *_, sent in found) else None

    sent = wait_for(all_sent, what="the worker sending every receipt", timeout=60)
    assert sorted((public_id, count) for public_id, count, _ in sent) == sorted(
        (public_id, 1) for public_id in paid
    )


def _require_postgres_tools() -> None:
    missing = [tool for tool in ("pg_dump", "pg_restore") if shutil.which(tool) is None]
    require(
        "pg_dump and pg_restore",
        f"{' and '.join(missing)} not installed (apt-get install postgresql-client)"
        if missing
        else None,
    )


COUNTS = (
    "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM units), "
    "(SELECT count(*) FROM stripe_events), (SELECT sum(sold) FROM batches)"
)


@pytest.fixture
def restored(two_hosts: Cluster, crash: Crash, tmp_path) -> Iterator[str]:
    """A backup of the cluster's database taken after the crash (``pg_dump``), restored into a
    freshly created database (``pg_restore``), as docs/DEPLOY.md says; that database's URL."""
    _require_postgres_tools()
    dump = tmp_path / "smallbatch.dump"
    subprocess.run(
        [
            "pg_dump",
            "--format=custom",
            f"--file={dump}",
            databases.libpq_url(two_hosts.database_url),
        ],
        check=True,
        timeout=120,
    )
    with databases.fresh_postgres_database("smallbatch_restored") as url:
        subprocess.run(
            ["pg_restore", "--no-owner", f"--dbname={databases.libpq_url(url)}", str(dump)],
            check=True,
            timeout=120,
        )
        yield url


def test_a_backup_taken_after_the_crash_restores_into_a_database_that_reconciles(
    two_hosts: Cluster, restored: str
):
    check = two_hosts.flask("shop", "ledger", "--check", database_url=restored)

    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 did not reconcile" in check.stdout
    assert two_hosts.sql(COUNTS, database_url=restored) == two_hosts.sql(COUNTS)

"""``/metrics`` from gunicorn with two worker processes (multiprocess mode): a real buy, a
refusal, a Stripe call, webhooks, a worker pass and the database pool, each counted once
however many processes served them; refused to anyone without the token or outside the
allowed networks."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit import rawhttp, seed, servers
from tests.support.stripe import signature, stripe_environment

pytestmark = pytest.mark.concurrency

TOKEN = "metrics-token-0123456789abcdefghijklmnop"


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("metrics"))


@pytest.fixture(scope="module")
def metered_server(ops_database_url, emulator_server, metrics_dir) -> Iterator[servers.Server]:
    env = {
        **stripe_environment(emulator_server.url),
        "SHOP_METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
    }
    with servers.start_gunicorn(
        ops_database_url, workers=2, threads=2, reuse_port=True, extra_env=env
    ) as server:
        yield server


def scrape(server: servers.Server, token: str | None = TOKEN) -> rawhttp.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    raw = rawhttp.build_request(server.address, "GET", "/metrics", headers=headers)
    return rawhttp.send_raw(server.address, raw)


def samples(server: servers.Server) -> dict[tuple[str, frozenset], float]:
    response = scrape(server)
    assert response.status == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_every_scrape_counts_what_both_workers_served(metered_server, ops_app):
    drop = seed.seed_live_drop(ops_app, edition_size=1, limit=1)
    first, second = seed.create_customers(ops_app, 2)
    before = samples(metered_server)
    pages = 12
    for _ in range(pages):
        assert rawhttp.http_request(metered_server.address, "GET", f"/drops/{drop.slug}").status
        stock = rawhttp.http_request(metered_server.address, "GET", f"/api/drops/{drop.slug}/stock")
        assert stock.status == 200

    buyer = rawhttp.login(metered_server.address, first.email, page=f"/drops/{drop.slug}")
    bought = buyer.buy(drop.batch_id)
    assert bought.status == 303
    assert buyer.get(bought.location.removeprefix(metered_server.url)).status == 303  # Stripe
    late = rawhttp.login(metered_server.address, second.email, page=f"/drops/{drop.slug}")
    assert late.buy(drop.batch_id).status == 409

    # Each of several scrapes (answered by either worker) adds up both processes.
    for _ in range(4):
        found = samples(metered_server)

        def grew(name: str, **labels: str) -> float:
            return value(found, name, **labels) - value(before, name, **labels)  # noqa: B023

        drop_pages = grew(
            "shop_http_requests_total", endpoint="storefront.drop", method="GET", status="200"
        )
        assert drop_pages == pages + 2  # and the two logins' pages
        assert (
            grew(
                "shop_http_requests_total",
                endpoint="storefront.drop_stock",
                method="GET",
                status="200",
            )
            == pages
        )
        assert grew("shop_holds_total", result="taken") == 1
        assert grew("shop_holds_total", result="sold_out") == 1
        assert (
            grew("shop_stripe_calls_total", operation="checkout.sessions.create", outcome="ok") == 1
        )
        assert (
            grew("shop_stripe_call_duration_seconds_count", operation="checkout.sessions.create")
            == 1
        )
        assert value(found, "shop_db_pool_connections_open") >= 1
        capacity = value(found, "shop_db_pool_capacity")
        assert capacity in (15, 30)  # 5 + 10 per worker that has connected


def test_webhook_deliveries_are_counted_by_type_and_result(metered_server):
    before = samples(metered_server)
    event = json.dumps(
        {
            "id": f"evt_metrics_{time.time_ns()}",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_test_nobody_made_this", "object": "checkout.session"}},
        }
    )
    for header in (signature(event), "t=1,v1=forged"):
        raw = rawhttp.build_request(metered_server.address, "POST", "/stripe/webhook")
        head, _, _ = raw.partition(b"\r\n\r\n")
        head = head.replace(b"Content-Length: 0", f"Content-Length: {len(event)}".encode())
        request = (
            head
            + f"\r\nContent-Type: application/json\r\nStripe-Signature: {header}".encode()
            + b"\r\n\r\n"
            + event.encode()
        )
        rawhttp.send_raw(metered_server.address, request)
    found = samples(metered_server)
    labels = {"type": "checkout.session.completed", "result": "ignored"}
    assert (
        value(found, "shop_webhook_events_total", **labels)
        - value(before, "shop_webhook_events_total", **labels)
        == 1
    )
    invalid = {"type": "unverified", "result": "invalid"}
    assert (
        value(found, "shop_webhook_events_total", **invalid)
        - value(before, "shop_webhook_events_total", **invalid)
        == 1
    )
    retrieve = {"operation": "checkout.sessions.retrieve", "outcome": "rejected"}
    assert value(found, "shop_stripe_calls_total", **retrieve) > value(
        before, "shop_stripe_calls_total", **retrieve
    )


def test_a_worker_sharing_the_directory_shows_its_passes_in_the_same_scrape(
    metered_server, ops_database_url, emulator_server, metrics_dir
):
    before = samples(metered_server)
    env = servers.server_env(
        ops_database_url,
        base_url="http://127.0.0.1:9",
        extra={**stripe_environment(emulator_server.url), "PROMETHEUS_MULTIPROC_DIR": metrics_dir},
    )
    finished = subprocess.run(
        [str(servers.VENV_BIN / "flask"), "--app", "wsgi", "shop", "worker", "--once"],
        cwd=servers.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    found = samples(metered_server)
    for job in ("sweep", "notices", "outbox"):
        ran = {"job": job, "outcome": "ok"}
        assert (
            value(found, "shop_worker_job_runs_total", **ran)
            - value(before, "shop_worker_job_runs_total", **ran)
            == 1
        ), job


def test_metrics_are_refused_without_the_token_from_anywhere(metered_server):
    assert scrape(metered_server, token=None).status == 403  # loopback, but a token is set
    assert scrape(metered_server, token="wrong-" + TOKEN).status == 403
    raw = rawhttp.build_request(
        metered_server.address, "GET", "/metrics", headers={"Authorization": TOKEN}
    )
    assert rawhttp.send_raw(metered_server.address, raw).status == 403  # not "Bearer …"
    assert scrape(metered_server).status == 200


@pytest.fixture
def loopback_only(database_url) -> Iterator:
    from shop.extensions import db
    from testkit import databases

    def build(**overrides):
        app = databases.make_app(database_url, SHOP_METRICS_TOKEN=None, **overrides)
        built.append(app)
        return app.test_client()

    built: list = []
    yield build
    for app in built:
        with app.app_context():
            db.engine.dispose()


@pytest.mark.parametrize(
    ("client_address", "forwarded", "proxies", "status"),
    [
        ("127.0.0.1", None, 0, 200),
        ("::1", None, 0, 200),
        ("198.51.100.7", None, 0, 403),
        ("127.0.0.1", "198.51.100.7", 0, 403),  # through a proxy the shop does not count
        ("127.0.0.1", "198.51.100.7", 1, 403),  # the proxy says who is asking
        ("127.0.0.1", "127.0.0.1", 1, 200),
        ("10.1.2.3", None, 0, 200),  # in the configured network below
    ],
)
def test_without_a_token_only_the_configured_networks_may_scrape(
    loopback_only, client_address, forwarded, proxies, status
):
    client = loopback_only(
        SHOP_PROXY_COUNT=proxies,
        SHOP_METRICS_NETWORKS=[
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
            ipaddress.ip_network("10.1.0.0/16"),
        ],
    )
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    response = client.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": client_address})
    assert response.status_code == status


def test_metric_networks_that_are_not_networks_stop_the_start(monkeypatch):
    import config

    monkeypatch.setenv("SHOP_METRICS_NETWORKS", "127.0.0.1, intranet")
    with pytest.raises(RuntimeError, match=r"SHOP_METRICS_NETWORKS.*intranet"):
        config.TestingConfig()
    monkeypatch.setenv("SHOP_METRICS_NETWORKS", "10.0.0.0/8, 192.168.1.7")
    assert [str(n) for n in config.TestingConfig().SHOP_METRICS_NETWORKS] == [
        "10.0.0.0/8",
        "192.168.1.7/32",
    ]

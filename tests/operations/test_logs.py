"""Structured logs from real processes: gunicorn's workers write one JSON line per request
(request id, method, route, status, duration, user, client through the trusted proxy), the
worker one per job; no password, full email, card number or secret ever appears."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from shop import logs
from testkit import rawhttp, seed, servers
from tests.support.stripe import CARD_OK, SECRET_KEY, WEBHOOK_SECRET, stripe_environment

pytestmark = pytest.mark.concurrency

PASSWORD = "Zebra-Quill-77-never-logged"
CLIENT = "203.0.113.7"


@pytest.fixture(scope="module")
def json_server(ops_database_url, emulator_server) -> Iterator[servers.Server]:
    env = {
        **stripe_environment(emulator_server.url),
        "SHOP_LOG_FORMAT": "json",
        "SHOP_PROXY_COUNT": "1",
    }
    with servers.start_gunicorn(ops_database_url, workers=2, threads=2, extra_env=env) as server:
        yield server


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def requests_logged(server: servers.Server) -> list[dict]:
    return [line for line in json_lines(server.log()) if line.get("event") == "request"]


def send(server: servers.Server, method: str, path: str, *, headers=None, **kwargs):
    headers = {"X-Forwarded-For": CLIENT, **(headers or {})}
    raw = rawhttp.build_request(server.address, method, path, headers=headers, **kwargs)
    return rawhttp.send_raw(server.address, raw)


def test_a_request_is_one_json_line_with_its_route_status_time_user_and_client(
    json_server, ops_app
):
    drop = seed.seed_live_drop(ops_app)
    customer = seed.create_customers(ops_app, 1, password=PASSWORD)[0]
    cookies: dict[str, str] = {}
    page = send(json_server, "GET", "/account/login")
    cookies.update(page.cookies)
    login = send(
        json_server,
        "POST",
        "/account/login",
        fields={
            "csrf_token": rawhttp.csrf_token_in(page.text),
            "email": customer.email,
            "password": PASSWORD,
        },
        cookies=cookies,
    )
    assert login.status == 303
    cookies.update(login.cookies)
    drop_page = send(json_server, "GET", f"/drops/{drop.slug}", cookies=cookies)
    cookies.update(drop_page.cookies)
    bought = send(
        json_server,
        "POST",
        f"/checkout/batches/{drop.batch_id}",
        fields={"csrf_token": rawhttp.csrf_token_in(drop_page.text), "quantity": 1},
        cookies=cookies,
        headers={"X-Request-Id": "lb-0123456789abcdef"},
    )
    assert bought.status == 303
    assert bought.headers["x-request-id"] == "lb-0123456789abcdef"

    [line] = [r for r in requests_logged(json_server) if r["request_id"] == "lb-0123456789abcdef"]
    assert line["method"] == "POST"
    assert line["route"] == "/checkout/batches/<int:batch_id>"
    assert line["status"] == 303
    assert line["user_id"] == customer.id
    assert line["client"] == CLIENT
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["time"].endswith("+00:00")
    [page_line] = [r for r in requests_logged(json_server) if r["route"] == "/drops/<slug>"]
    assert page_line["request_id"] == drop_page.headers["x-request-id"]


def test_an_error_page_shows_the_request_id_that_the_log_line_carries(json_server):
    missing = send(json_server, "GET", "/drops/no-such-drop-anywhere")
    assert missing.status == 404
    request_id = missing.headers["x-request-id"]
    assert f"<code>{request_id}</code>" in missing.text
    [line] = [r for r in requests_logged(json_server) if r["request_id"] == request_id]
    assert (line["status"], line["route"]) == (404, "/drops/<slug>")
    unrouted = send(json_server, "GET", "/no/such/page")
    [line] = [
        r
        for r in requests_logged(json_server)
        if r["request_id"] == unrouted.headers["x-request-id"]
    ]
    assert (line["status"], line["route"]) == (404, None)


def test_health_checks_and_metrics_are_not_logged_at_info(json_server):
    for path in ("/healthz", "/readyz"):
        assert send(json_server, "GET", path).status == 200
    assert not [r for r in requests_logged(json_server) if r["route"] in ("/healthz", "/readyz")]


def test_no_password_email_card_number_or_secret_reaches_the_log(
    json_server, ops_app, emulator_server
):
    drop = seed.seed_live_drop(ops_app)
    customer = seed.create_customers(ops_app, 1, password=PASSWORD)[0]
    session = rawhttp.login(json_server.address, customer.email, PASSWORD)
    refused = rawhttp.login  # a wrong password: a 401 with the attempt in the body
    with pytest.raises(AssertionError):
        refused(json_server.address, customer.email, PASSWORD + "-wrong")
    session.get(f"/drops/{drop.slug}")
    bought = session.post(f"/checkout/batches/{drop.batch_id}", {"quantity": 1, "card": CARD_OK})
    assert bought.status == 303
    paying = session.get(bought.location.removeprefix(json_server.url))
    assert paying.status == 303  # to the emulator's checkout page: Stripe was asked
    assert session.get("/checkout/orders/nope/pay").status == 404

    output = json_server.log()
    assert requests_logged(json_server)
    for secret in (
        PASSWORD,
        customer.email,
        CARD_OK,
        SECRET_KEY,
        WEBHOOK_SECRET,
        session.cookies.get("smallbatch_session", "-none-"),
    ):
        assert secret not in output, secret


def test_the_worker_logs_one_json_line_per_job(ops_database_url, emulator_server):
    env = servers.server_env(
        ops_database_url,
        base_url="http://127.0.0.1:9",
        extra={**stripe_environment(emulator_server.url), "SHOP_LOG_FORMAT": "json"},
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
    jobs = [line for line in json_lines(finished.stderr) if line.get("event") == "job"]
    # Every sweep is logged; a notices or outbox job only when it did something (else DEBUG).
    assert jobs[0]["job"] == "sweep", jobs
    known = {"sweep", "waitlist", "refusals", "notices", "outbox", "ledger"}
    assert {line["job"] for line in jobs} <= known
    sweep = jobs[0]
    assert sweep["outcome"] == "ok" and sweep["duration_ms"] >= 0
    assert sweep["summary"].startswith("sweep: ")


@pytest.mark.parametrize(
    ("text", "shown", "hidden"),
    [
        ("mail to jane.doe@example.com failed", "j***@example.com", "jane.doe@"),
        ("card 4242 4242 4242 4242 declined", "[redacted]", "4242 4242"),
        ("card 4000000000000002", "[redacted]", "4000000000000002"),
        ("key sk_live_abcDEF123 and whsec_xyz789", "[redacted]", "abcDEF123"),
        ("order 1234567890123 has 13 digits, not Luhn", "1234567890123", "[redacted]"),
    ],
)
def test_redaction_hides_emails_card_numbers_and_stripe_secrets(text, shown, hidden):
    redacted = logs.redact(text)
    assert shown in redacted
    assert hidden not in redacted


def test_development_logs_are_text_and_production_logs_json(monkeypatch):
    import config

    monkeypatch.delenv("SHOP_LOG_FORMAT", raising=False)
    assert config.DevelopmentConfig().SHOP_LOG_FORMAT == "text"
    assert config.ProductionConfig().SHOP_LOG_FORMAT == "json"
    monkeypatch.setenv("SHOP_LOG_FORMAT", "JSON")
    assert config.DevelopmentConfig().SHOP_LOG_FORMAT == "json"
    monkeypatch.setenv("SHOP_LOG_FORMAT", "yaml")
    with pytest.raises(RuntimeError, match="SHOP_LOG_FORMAT"):
        config.DevelopmentConfig()
    assert os.environ["SHOP_LOG_FORMAT"] == "yaml"

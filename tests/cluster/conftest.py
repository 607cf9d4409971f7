"""The shop as docs/DEPLOY.md runs it, on one machine: nginx (Debian's, the deploy/ site with
only ports and paths changed) in front of two app hosts — separate gunicorn masters, each with
instance folders of its own (uploads, mailbox, metrics) — a worker (``flask shop worker``), one
PostgreSQL, Redis for the shared rate limits, and the Stripe emulator as a process of its own
that delivers its webhooks through nginx over TLS.

The hosts share what production hosts share (``SECRET_KEY``, the certificate key, the Stripe
keys, the database, Redis) and nothing else. Every customer of these tests comes from
127.0.0.1, so the hold cap per client network is off and logins per address are generous.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from flask import Flask
from sqlalchemy import create_engine, text

from shop.extensions import db
from testkit import databases, rawhttp, seed, servers
from tests.support import nginx as nginx_support
from tests.support import redis_server
from tests.support.stripe import WEBHOOK_SECRET, Emulator, stripe_environment

# A customer may try to buy this often per minute, counted in Redis for every host together.
BUY_LIMIT_PER_CUSTOMER = 4
# Where a buy sends the customer next.
PAY_PATH = re.compile(r"/checkout/orders/([A-Za-z0-9_-]+)/pay")


@dataclass
class Cluster:
    database_url: str
    app: Flask  # for seeding and reading back, never serving
    hosts: list[servers.Server]
    worker: subprocess.Popen
    nginx: nginx_support.Nginx
    emulator: Emulator
    env: dict[str, str]  # what the hosts share, for a command run beside them

    def login(self, email: str, *, page: str = "/account/") -> rawhttp.ShopSession:
        """A customer signed in through nginx (the form, over TLS)."""
        return rawhttp.login(self.nginx.address, email, page=page, tls=self.nginx.tls(), timeout=60)

    def host_name(self, address: str | None) -> str | None:
        """ "a" or "b" for an app host's address as nginx logs it."""
        names = {f"{h.host}:{h.port}": name for h, name in zip(self.hosts, "ab", strict=True)}
        return names.get(address or "")

    def flask(self, *args: str, database_url: str | None = None) -> subprocess.CompletedProcess:
        """``flask --app wsgi <args>`` with the hosts' settings (on another database if given)."""
        env = {**self.env, "DATABASE_URL": database_url or self.database_url}
        return subprocess.run(
            [str(servers.VENV_BIN / "flask"), "--app", "wsgi", *args],
            cwd=servers.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def sql(self, query: str, *, database_url: str | None = None, **params: Any) -> list[Any]:
        """Rows of ``query`` on the cluster's database as it is now (or on another one)."""
        engine = create_engine(database_url) if database_url else None
        try:
            with self.app.app_context(), (engine or db.engine).connect() as connection:
                return [tuple(row) for row in connection.execute(text(query), params)]
        finally:
            if engine is not None:
                engine.dispose()


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory) -> Iterator[Cluster]:
    """One cluster for the whole module (starting one takes seconds)."""
    nginx_support.require_nginx()
    redis_server.require_redis()
    with cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@contextmanager
def cluster(directory: Path) -> Iterator[Cluster]:
    with ExitStack() as stack:
        url = stack.enter_context(databases.migrated_postgres_database("smallbatch_cluster"))
        prefix = stack.enter_context(redis_server.private_prefix("smallbatch-cluster"))
        https_port, emulator_port = servers.free_port(), servers.free_port()
        emulator = Emulator(f"http://{rawhttp.HOST}:{emulator_port}")
        shared = {
            **stripe_environment(emulator),
            "SECRET_KEY": secrets.token_urlsafe(32),
            "SHOP_CERTIFICATE_KEY": _certificate_key(),
            "SHOP_BASE_URL": f"https://{rawhttp.HOST}:{https_port}",
            "SHOP_PROXY_COUNT": "1",
            "REDIS_URL": redis_server.redis_url(),
            "RATELIMIT_ENABLED": "1",
            "RATELIMIT_KEY_PREFIX": prefix,
            "SHOP_LIMIT_BUY_PER_CUSTOMER": f"{BUY_LIMIT_PER_CUSTOMER} per minute",
            "SHOP_LIMIT_LOGIN_ATTEMPTS_PER_IP": "1000 per minute",
            "SHOP_DROP_HOLD_CAP_PER_NETWORK": "0",
            "SHOP_MAIL_POLL_SECONDS": "0.5",
        }
        hosts = [
            stack.enter_context(
                servers.start_gunicorn(
                    url,
                    workers=2,
                    threads=4,
                    stripe_api_base=emulator.url,
                    extra_env={**shared, **_instance(directory / f"host-{name}")},
                    startup_timeout=60,
                    ready_path="/readyz",
                    own_process_group=True,
                )
            )
            for name in "ab"
        ]
        proxy = stack.enter_context(
            nginx_support.running(
                directory / "nginx", app_ports=[h.port for h in hosts], https_port=https_port
            )
        )
        env = servers.server_env(url, base_url=shared["SHOP_BASE_URL"], extra=shared)
        stack.enter_context(_emulator(directory, emulator_port, proxy))
        worker = stack.enter_context(
            _process(
                [str(servers.VENV_BIN / "flask"), "--app", "wsgi", "shop", "worker"],
                ["--interval", "2"],
                env={**env, **_instance(directory / "worker")},
                log=directory / "worker.log",
            )
        )
        app = databases.make_app(url)
        try:
            yield Cluster(url, app, hosts, worker, proxy, emulator, env)
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def _instance(directory: Path) -> dict[str, str]:
    """One host's own instance folders."""
    (directory / "metrics").mkdir(parents=True)  # made by systemd (RuntimeDirectory) in production
    return {
        "SHOP_UPLOAD_DIR": str(directory / "uploads"),
        "SHOP_MAILBOX_DIR": str(directory / "mailbox"),
        "SHOP_CERTIFICATE_KEY_FILE": str(directory / "certificate_key.pem"),
        "PROMETHEUS_MULTIPROC_DIR": str(directory / "metrics"),
    }


def _certificate_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@contextmanager
def _emulator(directory: Path, port: int, proxy: nginx_support.Nginx) -> Iterator[None]:
    """``python -m stripe_emulator`` delivering webhooks to nginx, trusting its certificate."""
    command = [sys.executable, "-m", "stripe_emulator", "--port", str(port)]
    options = ["--webhook-url", f"{proxy.url}/stripe/webhook", "--webhook-secret", WEBHOOK_SECRET]
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(proxy.ca)}
    with _process(command, options, env=env, log=directory / "emulator.log") as process:
        url = f"http://{rawhttp.HOST}:{port}/_emulator/webhooks"
        wait_for(lambda: _answers(url), what="the Stripe emulator", timeout=30, process=process)
        yield


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def _process(
    command: list[str], options: list[str], *, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen]:
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, *options],
            cwd=servers.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def wait_for(
    condition: Callable[[], Any],
    *,
    what: str,
    timeout: float = 60,
    process: subprocess.Popen | None = None,
) -> Any:
    """Poll ``condition`` until it returns something true (returned); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def live_drop(cluster: Cluster, **batch: int) -> seed.LiveDrop:
    """A fresh live drop with one batch (``edition_size``, ``limit``)."""
    return seed.seed_live_drop(cluster.app, **batch)


def tagged(label: str) -> dict[str, str]:
    """A header nginx writes into its access log with the request (:meth:`Nginx.logged`)."""
    return {nginx_support.TEST_ID: label}

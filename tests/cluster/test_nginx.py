"""nginx in front of the shop, with the site config from deploy/ adapted only in ports and
paths: TLS ends at nginx, static files come from disk, anonymous drop pages and stock numbers
are micro-cached as the shop's Cache-Control allows, signed-in visitors always reach the app,
and an oversized upload gets the shop's own answer. Debian's nginx, gunicorn, PostgreSQL."""

from __future__ import annotations

import http.client
import ipaddress
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testkit import databases, seed, servers
from testkit.databases import require

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "nginx"


def _nginx_missing() -> str | None:
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        return None
    return "nginx is not installed (apt-get install nginx)"


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the test's CA and server at once)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _site_config(directory: Path, *, app_port: int, http_port: int, https_port: int) -> Path:
    """deploy/nginx's files with only ports and paths changed, and a main config around them."""
    cert, key = _certificate(directory)
    proxy = directory / "smallbatch-proxy.conf"
    proxy.write_text((DEPLOY / "smallbatch-proxy.conf").read_text())
    site = (DEPLOY / "smallbatch.conf").read_text()
    replacements = {
        "/var/cache/nginx/smallbatch": str(directory / "cache"),
        "server 127.0.0.1:8000": f"server 127.0.0.1:{app_port}",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "/etc/letsencrypt/live/shop.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/shop.example.com/privkey.pem": str(key),
        "/srv/smallbatch/static/": f"{ROOT / 'static'}/",
        "/etc/nginx/snippets/smallbatch-proxy.conf": str(proxy),
    }
    for old, new in replacements.items():
        assert old in site, f"deploy/nginx/smallbatch.conf no longer has {old!r}"
        site = site.replace(old, new)
    (directory / "site.conf").write_text(site)
    for sub in ("cache", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / sub).mkdir(mode=0o777, exist_ok=True)
    main = directory / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    main.write_text(
        f"""{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {directory}/access.log;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/site.conf;
}}
"""
    )
    return main


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict]:
    require("nginx for the cluster tests", _nginx_missing())
    directory = tmp_path_factory.mktemp("nginx")
    http_port, https_port = servers.free_port(), servers.free_port()
    with databases.migrated_postgres_database("smallbatch_cluster") as url:
        app = databases.make_app(url)
        drop = seed.seed_live_drop(app, edition_size=50, limit=2)
        with servers.start_gunicorn(
            url,
            workers=2,
            threads=2,
            extra_env={
                "SHOP_BASE_URL": f"https://127.0.0.1:{https_port}",
                "SHOP_PROXY_COUNT": "1",
            },
        ) as app_server:
            config = _site_config(
                directory,
                app_port=app_server.address[1],
                http_port=http_port,
                https_port=https_port,
            )
            test = subprocess.run(
                ["nginx", "-t", "-c", str(config), "-p", str(directory)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert test.returncode == 0, test.stderr
            nginx = subprocess.Popen(
                ["nginx", "-c", str(config), "-p", str(directory), "-g", "daemon off;"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                _wait_for(https_port, directory / "cert.pem")
                yield {
                    "https": https_port,
                    "http": http_port,
                    "ca": directory / "cert.pem",
                    "slug": drop.slug,
                    "app": app_server,
                }
            finally:
                nginx.terminate()
                nginx.wait(10)
                nginx.stderr.close()  # type: ignore[union-attr]
        with app.app_context():
            from shop.extensions import db

            db.engine.dispose()


def _wait_for(port: int, ca: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            _get(port, ca, "/healthz")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _get(port: int, ca: Path, path: str, *, method: str = "GET", body=None, headers=None):
    context = ssl.create_default_context(cafile=str(ca))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_plain_http_is_sent_to_https(cluster):
    connection = http.client.HTTPConnection("127.0.0.1", cluster["http"], timeout=10)
    connection.request("GET", "/drops/x", headers={"Host": "127.0.0.1"})
    response = connection.getresponse()
    response.read()
    connection.close()

    assert response.status == 301
    assert response.getheader("Location") == "https://127.0.0.1/drops/x"


def test_pages_come_from_the_app_over_tls_with_a_request_id(cluster):
    status, headers, body = _get(cluster["https"], cluster["ca"], "/")

    assert status == 200 and b"Small Batch" in body
    assert len(headers["x-request-id"]) >= 16


def test_static_files_are_served_by_nginx_with_long_caching(cluster):
    status, headers, body = _get(cluster["https"], cluster["ca"], "/static/css/shop.css")

    assert status == 200 and b".certificate" in body
    assert headers["cache-control"] == "public, max-age=604800"


def test_anonymous_stock_numbers_are_micro_cached_and_signed_in_visitors_bypass(cluster):
    path = f"/api/drops/{cluster['slug']}/stock"

    first = _get(cluster["https"], cluster["ca"], path)
    second = _get(cluster["https"], cluster["ca"], path)
    signed_in = _get(
        cluster["https"], cluster["ca"], path, headers={"Cookie": "smallbatch_session=x"}
    )

    assert first[0] == second[0] == 200
    assert first[1]["x-cache-status"] in ("MISS", "EXPIRED")
    assert second[1]["x-cache-status"] == "HIT"
    assert signed_in[1]["x-cache-status"] == "BYPASS"


def test_readiness_is_answered_through_nginx(cluster):
    status, _headers, body = _get(cluster["https"], cluster["ca"], "/readyz")

    assert status == 200, body


def test_an_oversized_upload_gets_the_shops_own_answer_and_a_huge_one_nginxs(cluster):
    just_over = b"x" * (16 * 1024 * 1024 + 1024)
    status, _headers, body = _get(
        cluster["https"],
        cluster["ca"],
        "/account/login",
        method="POST",
        body=just_over,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 413 and b"Small Batch" in body  # the shop's page, not nginx's

    huge = b"x" * (18 * 1024 * 1024)
    status, _headers, body = _get(
        cluster["https"],
        cluster["ca"],
        "/account/login",
        method="POST",
        body=huge,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 413

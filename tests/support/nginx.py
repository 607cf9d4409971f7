"""Debian's nginx with the site from ``deploy/nginx/`` in front of real app hosts, for the cluster
tests: the site's files with only ports and paths changed (the ``upstream`` gets one ``server``
line per app host: the deploy file's own and its commented second one), a self-signed
certificate for 127.0.0.1, and a main config of the test's own around them whose access log
says which app host answered each request (:meth:`Nginx.log`).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testkit import rawhttp, servers
from testkit.databases import require

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "nginx"
# Sent by a test with a request, written by nginx into the access log with that request.
TEST_ID = "X-Test-Id"
LOG_WAIT_SECONDS = 2.0  # nginx logs a request after its answer: how long a test waits for it


def missing() -> str | None:
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        return None
    return "nginx is not installed (apt-get install nginx)"


def require_nginx() -> None:
    """Skip locally, fail under CI, when Debian's nginx is not installed."""
    require("nginx for the cluster tests", missing())


def certificate(directory: Path) -> tuple[Path, Path]:
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


def site_config(directory: Path, *, app_ports: list[int], http_port: int, https_port: int) -> Path:
    """deploy/nginx's files with only ports and paths changed (one or two app hosts), and a
    main config around them; returns the main config's path."""
    assert 1 <= len(app_ports) <= 2, "deploy/nginx/smallbatch.conf names two app hosts"
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = certificate(directory)
    proxy = directory / "smallbatch-proxy.conf"
    snippet = (DEPLOY / "smallbatch-proxy.conf").read_text()
    # The shop is on 443 in production, where $host (which has no port) names it; here it is on
    # a port of the test's, which the Host passed on must keep (CSRF compares it with Referer).
    assert "proxy_set_header Host $host;" in snippet
    proxy.write_text(snippet.replace("Host $host;", "Host $host:$server_port;"))
    site = (DEPLOY / "smallbatch.conf").read_text()
    replacements = {
        "/var/cache/nginx/smallbatch": str(directory / "cache"),
        "server 127.0.0.1:8000": f"server 127.0.0.1:{app_ports[0]}",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "/etc/letsencrypt/live/shop.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/shop.example.com/privkey.pem": str(key),
        "/srv/smallbatch/static/": f"{ROOT / 'static'}/",
        "/etc/nginx/snippets/smallbatch-proxy.conf": str(proxy),
    }
    if len(app_ports) == 2:
        replacements["# server 10.0.0.12:8000"] = f"server 127.0.0.1:{app_ports[1]}"
    for old, new in replacements.items():
        assert old in site, f"deploy/nginx/smallbatch.conf no longer has {old!r}"
        site = site.replace(old, new)
    (directory / "site.conf").write_text(site)
    for sub in ("cache", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / sub).mkdir(mode=0o777, exist_ok=True)
    main = directory / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    header = TEST_ID.lower().replace("-", "_")
    main.write_text(
        f"""{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    log_format cluster '$http_{header}\\t$request_method\\t$uri\\t$status\\t'
                       '$upstream_addr\\t$upstream_status';
    access_log {directory}/access.log cluster;
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


@dataclass(frozen=True)
class Logged:
    """One request as nginx logged it: ``upstreams`` are the app hosts it was sent to, in
    order (more than one when nginx passed it on), with their answers in ``upstream_statuses``."""

    test_id: str
    method: str
    path: str
    status: int
    upstreams: tuple[str, ...]
    upstream_statuses: tuple[str, ...]

    @property
    def host(self) -> str | None:
        """The app host whose answer the client got (None when none answered)."""
        answered = [
            address
            for address, status in zip(self.upstreams, self.upstream_statuses, strict=False)
            if status.isdigit() and address.startswith("127.")
        ]
        return answered[-1] if answered else None


@dataclass
class Nginx:
    directory: Path
    https: int
    http: int
    process: subprocess.Popen

    @property
    def address(self) -> rawhttp.Address:
        return (rawhttp.HOST, self.https)

    @property
    def url(self) -> str:
        return f"https://{rawhttp.HOST}:{self.https}"

    @property
    def ca(self) -> Path:
        return self.directory / "cert.pem"

    def tls(self) -> ssl.SSLContext:
        """A client TLS context that trusts this nginx's certificate."""
        return ssl.create_default_context(cafile=str(self.ca))

    def log(self) -> list[Logged]:
        """Every request nginx logged so far, oldest first."""
        path = self.directory / "access.log"
        entries = []
        for line in path.read_text().splitlines() if path.exists() else []:
            test_id, method, uri, status, upstreams, statuses = line.split("\t")
            entries.append(
                Logged(
                    "" if test_id == "-" else test_id,
                    method,
                    uri,
                    int(status),
                    tuple(_split_upstreams(upstreams)),
                    tuple(_split_upstreams(statuses)),
                )
            )
        return entries

    def logged(self, test_id: str) -> Logged:
        """The log entry of the request sent with ``X-Test-Id: test_id``. nginx writes it once
        the answer has gone out, so a client can read the answer first: wait for it a little."""
        deadline = time.monotonic() + LOG_WAIT_SECONDS
        while not (found := [e for e in self.log() if e.test_id == test_id]):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        assert len(found) == 1, f"{len(found)} log entries for {test_id!r}"
        return found[0]


def _split_upstreams(value: str) -> list[str]:
    """``$upstream_addr``: "a, b" for a request passed on, "a, b : c" across a redirect."""
    return [part.strip() for part in value.replace(" : ", ", ").split(",") if part.strip()]


@contextmanager
def running(
    directory: Path, *, app_ports: list[int], https_port: int | None = None
) -> Iterator[Nginx]:
    """nginx with the deploy/ site in front of ``app_ports``, answering over TLS on
    ``https_port`` (a free port if not chosen beforehand, e.g. for the hosts' base URL)."""
    require_nginx()
    http_port, https_port = servers.free_port(), https_port or servers.free_port()
    config = site_config(directory, app_ports=app_ports, http_port=http_port, https_port=https_port)
    test = subprocess.run(
        ["nginx", "-t", "-c", str(config), "-p", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert test.returncode == 0, test.stderr
    process = subprocess.Popen(
        ["nginx", "-c", str(config), "-p", str(directory), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    nginx = Nginx(directory, https_port, http_port, process)
    try:
        _wait_for(nginx)
        yield nginx
    finally:
        process.terminate()
        process.wait(10)
        process.stderr.close()  # type: ignore[union-attr]


def _wait_for(nginx: Nginx) -> None:
    deadline = time.monotonic() + 30
    while True:
        if nginx.process.poll() is not None:
            raise RuntimeError(f"nginx exited: {nginx.process.stderr.read()}")  # type: ignore[union-attr]
        try:
            rawhttp.http_request(nginx.address, "GET", "/healthz", tls=nginx.tls(), timeout=5)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

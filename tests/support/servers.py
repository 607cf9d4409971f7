"""Real servers for concurrency tests and benchmarks, and real clients to race them.

- the shop under gunicorn in a subprocess (:func:`start_gunicorn`), or on a threaded werkzeug
  server in this process (:func:`start_threaded_server`, for SQLite);
- fresh migrated databases (:func:`migrated_postgres_database`, :func:`migrated_sqlite_database`)
  seeded through our factories and services (:func:`seed_live_drop`, :func:`add_batch`,
  :func:`create_customers`);
- a logged-in client speaking HTTP/1.1 over raw sockets (:func:`login` → :class:`ShopSession`);
- :func:`burst`: N requests sent in full except their last byte, then every last byte at once.

Everything started here is stopped cleanly (terminate, wait, close), so no ResourceWarning.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import selectors
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import insert
from sqlalchemy.engine import make_url
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

import config as settings
from shop import clock, create_app, passwords
from shop.extensions import db
from shop.models import Drop, User
from shop.models.drop import OPEN
from tests.support import databases, factories

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
PASSWORD = factories.PASSWORD
HOST = "127.0.0.1"

Address = tuple[str, int]


# --------------------------------------------------------------------------------------------
# Settings and databases


def testing_config(database_url: str, **overrides: object) -> settings.Config:
    """TestingConfig pointed at ``database_url``, with ``overrides`` applied."""
    config = settings.TestingConfig()
    config.SQLALCHEMY_DATABASE_URI = database_url
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def make_app(database_url: str, **overrides: object) -> Flask:
    """The real app on ``database_url`` under TestingConfig (for seeding and in-process servers)."""
    return create_app(testing_config(database_url, **overrides))


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy URL as psycopg/libpq wants it (``postgresql://…``)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def migrate(database_url: str) -> None:
    """Run the real Alembic migrations against ``database_url``."""
    app = make_app(database_url)
    with app.app_context():
        upgrade()
        db.engine.dispose()


@contextmanager
def migrated_postgres_database(prefix: str = "smallbatch_race") -> Iterator[str]:
    """A freshly created, migrated PostgreSQL database; dropped afterwards."""
    with databases.fresh_postgres_database(prefix) as url:
        migrate(url)
        yield url


def migrated_sqlite_database(directory: Path) -> str:
    """A migrated SQLite file in ``directory`` (WAL mode is set by the app on connect)."""
    url = f"sqlite:///{Path(directory) / 'shop.sqlite3'}"
    migrate(url)
    return url


# --------------------------------------------------------------------------------------------
# Seeding, through the factories and services (each helper commits)


@dataclass(frozen=True)
class LiveDrop:
    maker_id: int
    drop_id: int
    slug: str
    batch_ids: list[int]

    @property
    def batch_id(self) -> int:
        return self.batch_ids[0]


@dataclass(frozen=True)
class Customer:
    id: int
    email: str
    password: str = PASSWORD


def seed_live_drop(
    app: Flask,
    *,
    edition_size: int = 10,
    limit: int = 2,
    price: int = 2500,
    batches: int = 1,
    now: datetime | None = None,
) -> LiveDrop:
    """A maker with an open drop that is live now (real clock) and ``batches`` batches."""
    now = now or clock.now()
    with app.app_context():
        maker = factories.make_maker()
        drop = factories.make_drop(
            maker, state=OPEN, opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=2)
        )
        batch_ids = [
            factories.make_batch(
                factories.make_product(maker),
                drop,
                edition_size=edition_size,
                limit=limit,
                price=price,
            ).id
            for _ in range(batches)
        ]
        seeded = LiveDrop(maker.id, drop.id, drop.slug, batch_ids)
        db.session.commit()
        db.session.remove()
    return seeded


def add_batch(
    app: Flask, drop: LiveDrop, *, edition_size: int = 10, limit: int = 2, price: int = 2500
) -> int:
    """One more batch in ``drop`` (a fresh race on the same server); returns its id."""
    with app.app_context():
        maker = db.session.get(User, drop.maker_id)
        product = factories.make_product(maker)
        batch = factories.make_batch(
            product,
            db.session.get(Drop, drop.drop_id),
            edition_size=edition_size,
            limit=limit,
            price=price,
        )
        batch_id = batch.id
        db.session.commit()
        db.session.remove()
    return batch_id


def create_customers(app: Flask, count: int, *, password: str = PASSWORD) -> list[Customer]:
    """``count`` customer accounts inserted in one statement (one password hash shared)."""
    tag = secrets.token_hex(3)
    emails = [f"buyer-{tag}-{n}@example.com" for n in range(count)]
    with app.app_context():
        password_hash = passwords.hash_password(password)
        rows = [
            {
                "email": email,
                "password_hash": password_hash,
                "display_name": f"Buyer {n}",
                "role": "customer",
                "is_admin": False,
                "timezone": "UTC",
                "session_token": secrets.token_urlsafe(16),
                "created_at": clock.now(),
            }
            for n, email in enumerate(emails)
        ]
        created = db.session.execute(
            insert(User).returning(User.id, User.email, sort_by_parameter_order=True), rows
        ).all()
        db.session.commit()
        db.session.remove()
    return [Customer(row.id, row.email, password) for row in created]


# --------------------------------------------------------------------------------------------
# Servers


def free_port(host: str = HOST) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def server_env(
    database_url: str,
    *,
    base_url: str,
    stripe_api_base: str | None = None,
    hold_minutes: int = 10,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment a shop server process runs with (SHOP_ENV=testing, emulator keys)."""
    env = dict(os.environ)
    env.update(
        {
            "SHOP_ENV": "testing",
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "STRIPE_SECRET_KEY": settings.EMULATOR_SECRET_KEY,
            "STRIPE_WEBHOOK_SECRET": settings.EMULATOR_WEBHOOK_SECRET,
            "SHOP_BASE_URL": base_url,
            "SHOP_HOLD_MINUTES": str(hold_minutes),
            "RATELIMIT_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if stripe_api_base:
        env["STRIPE_API_BASE"] = stripe_api_base
    else:
        env.pop("STRIPE_API_BASE", None)
    env.update(extra or {})
    return env


class ServerFailed(RuntimeError):
    pass


class Server:
    """A running shop server (gunicorn subprocess or in-process werkzeug); stop it or use
    ``with``. ``log()`` returns what the server wrote so far (gunicorn only)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        process: subprocess.Popen | None = None,
        log_file: Any = None,
        wsgi_server: BaseWSGIServer | None = None,
        thread: threading.Thread | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.process = process
        self.command = command or []
        self._log_file = log_file
        self._wsgi_server = wsgi_server
        self._thread = thread
        self._stopped = False

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        if self._log_file is None or self._log_file.closed:
            return ""
        self._log_file.flush()
        return Path(self._log_file.name).read_text(errors="replace")

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after 15 s), every handle closed. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._wsgi_server is not None:
            self._wsgi_server.shutdown()
            self._wsgi_server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        if self._log_file is not None:
            self._log_file.close()
            Path(self._log_file.name).unlink(missing_ok=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Server {self.url}>"


def gunicorn_command(
    port: int,
    *,
    workers: int,
    threads: int,
    app: str = "wsgi:app",
    preload: bool = True,
    reuse_port: bool = False,
) -> list[str]:
    command = [
        str(VENV_BIN / "gunicorn"),
        "-w",
        str(workers),
        "--threads",
        str(threads),
        "-b",
        f"{HOST}:{port}",
        "--graceful-timeout",
        "5",
        "--timeout",
        "60",
        "--backlog",
        "2048",
        "--no-control-socket",  # gunicorn ≥ 24 shares one control socket path per user
    ]
    if preload:
        command.append("--preload")
    if reuse_port:
        # One listening socket per worker: the kernel spreads connections evenly, where a
        # shared socket lets one worker accept most keep-alive connections of a burst.
        command.append("--reuse-port")
    return [*command, app]


def start_gunicorn(
    database_url: str,
    *,
    workers: int = 3,
    threads: int = 4,
    app: str = "wsgi:app",
    stripe_api_base: str | None = None,
    hold_minutes: int = 10,
    preload: bool = True,
    reuse_port: bool = False,
    extra_env: dict[str, str] | None = None,
    startup_timeout: float = 30.0,
) -> Server:
    """The app under ``gunicorn -w workers --threads threads`` on a free port, answering.

    ``preload`` imports the app once in the master (create_app opens no connection, so the
    forked workers share nothing); ``app`` may name another WSGI module (the benchmarks' apps).
    """
    last_error: Exception | None = None
    for _attempt in range(3):  # a free port can be taken between probing and binding
        port = free_port()
        command = gunicorn_command(
            port, workers=workers, threads=threads, app=app, preload=preload, reuse_port=reuse_port
        )
        env = server_env(
            database_url,
            base_url=f"http://{HOST}:{port}",
            stripe_api_base=stripe_api_base,
            hold_minutes=hold_minutes,
            extra=extra_env,
        )
        log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by Server.stop
            "w+", prefix="gunicorn-", suffix=".log", delete=False
        )
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        server = Server(HOST, port, process=process, log_file=log_file, command=command)
        try:
            wait_until_answering(server, timeout=startup_timeout)
        except ServerFailed as error:
            log = server.log()
            server.stop()
            if "Address already in use" in log:
                last_error = error
                continue
            raise
        return server
    raise ServerFailed(f"gunicorn could not bind a port: {last_error}")


def wait_until_answering(server: Server, *, timeout: float = 30.0, path: str = "/") -> None:
    """Poll ``path`` until the server answers with anything below 500."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise ServerFailed(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            response = http_request(server.address, "GET", path, timeout=2)
        except OSError:
            time.sleep(0.05)
            continue
        if response.status < 500:
            return
        time.sleep(0.05)
    raise ServerFailed(f"server did not answer within {timeout} s:\n{server.log()}")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def start_threaded_server(app: Flask, *, host: str = HOST) -> Server:
    """``app`` on werkzeug's threaded server (one thread per connection) in this process."""
    wsgi_server = make_server(host, 0, app, threaded=True, request_handler=_QuietHandler)
    wsgi_server.daemon_threads = True
    thread = threading.Thread(
        target=wsgi_server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"shop-{wsgi_server.server_port}",
        daemon=True,
    )
    thread.start()
    server = Server(host, wsgi_server.server_port, wsgi_server=wsgi_server, thread=thread)
    wait_until_answering(server, timeout=10)
    return server


# --------------------------------------------------------------------------------------------
# HTTP over raw sockets


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    cookies: dict[str, str]
    body: bytes
    finished_at: float = 0.0  # time.monotonic() when the response was complete

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def location(self) -> str | None:
        return self.headers.get("location")


class _Source:
    """http.client's parser reads a response from a byte string as if from a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, *_args: object, **_kwargs: object):
        import io

        return io.BytesIO(self._data)


def parse_response(raw: bytes, *, finished_at: float = 0.0) -> Response:
    """A complete HTTP/1.1 response (read until the server closed) as a :class:`Response`."""
    parsed = http.client.HTTPResponse(_Source(raw))  # type: ignore[arg-type]
    try:
        parsed.begin()
        body = parsed.read()
    finally:
        parsed.close()
    cookies: dict[str, str] = {}
    for header in parsed.msg.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        value = rest.split(";", 1)[0]
        cookies[name.strip()] = value
    headers = {name.lower(): value for name, value in parsed.getheaders()}
    return Response(parsed.status, headers, cookies, body, finished_at)


def build_request(
    address: Address,
    method: str,
    path: str,
    *,
    fields: dict[str, object] | None = None,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 request that asks the server to close the connection after."""
    body = urlencode(fields).encode() if fields is not None else b""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {address[0]}:{address[1]}",
        "Connection: close",
        "Accept: text/html",
        "User-Agent: smallbatch-tests",
    ]
    if cookies:
        lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
    if fields is not None:
        lines.append("Content-Type: application/x-www-form-urlencoded")
    if method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def send_raw(address: Address, request: bytes, *, timeout: float = 10.0) -> Response:
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(request)
        raw = _read_all(sock)
    return parse_response(raw, finished_at=time.monotonic())


def http_request(
    address: Address,
    method: str,
    path: str,
    *,
    fields: dict[str, object] | None = None,
    cookies: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    """One request on its own connection."""
    request = build_request(address, method, path, fields=fields, cookies=cookies)
    return send_raw(address, request, timeout=timeout)


_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_token_in(html: str) -> str | None:
    found = _CSRF.search(html)
    return (found.group(1) or found.group(2)) if found else None


@dataclass
class ShopSession:
    """A browser-like client: its cookies and the CSRF token of the last page it read."""

    address: Address
    cookies: dict[str, str] = field(default_factory=dict)
    csrf_token: str | None = None

    def request(self, method: str, path: str, fields: dict[str, object] | None = None) -> Response:
        response = send_raw(
            self.address,
            build_request(self.address, method, path, fields=fields, cookies=self.cookies),
        )
        self.cookies.update(response.cookies)
        token = csrf_token_in(response.text) if response.status == 200 else None
        if token:
            self.csrf_token = token
        return response

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, object] | None = None) -> Response:
        """A form POST carrying this session's CSRF token."""
        return self.request("POST", path, {"csrf_token": self.csrf_token or "", **(fields or {})})

    def form_request(self, path: str, fields: dict[str, object]) -> bytes:
        """The raw bytes of a form POST with this session's cookies and CSRF token."""
        return build_request(
            self.address,
            "POST",
            path,
            fields={"csrf_token": self.csrf_token or "", **fields},
            cookies=self.cookies,
        )

    def get_request(self, path: str) -> bytes:
        """The raw bytes of a GET of ``path`` with this session's cookies."""
        return build_request(self.address, "GET", path, cookies=self.cookies)

    def buy_request(self, batch_id: int, quantity: int = 1) -> bytes:
        """Raw bytes of ``POST /checkout/batches/<id>`` (the buy button)."""
        return self.form_request(f"/checkout/batches/{batch_id}", {"quantity": quantity})

    def buy(self, batch_id: int, quantity: int = 1) -> Response:
        return send_raw(self.address, self.buy_request(batch_id, quantity))


def login(
    address: Address, email: str, password: str = PASSWORD, *, page: str = "/account/"
) -> ShopSession:
    """Log in through the real form, then read ``page`` for a CSRF token of the new session."""
    session = ShopSession(address)
    session.get("/account/login")
    answer = session.post("/account/login", {"email": email, "password": password})
    if answer.status != 303:
        raise AssertionError(f"login as {email} answered {answer.status}: {answer.text[:300]}")
    session.csrf_token = None
    page_answer = session.get(page)
    if session.csrf_token is None:
        raise AssertionError(f"no csrf_token on {page} ({page_answer.status}) after login")
    return session


# --------------------------------------------------------------------------------------------
# Synchronized bursts


@dataclass
class Burst:
    responses: list[Response]
    released_at: float  # time.monotonic() when the last bytes went out
    alongside: Any = None  # what the ``alongside`` callable returned

    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]

    def count(self, status: int) -> int:
        return sum(1 for r in self.responses if r.status == status)


def burst(
    address: Address,
    requests: Sequence[bytes],
    *,
    timeout: float = 60.0,
    alongside: Callable[[], Any] | None = None,
) -> Burst:
    """Send every request but its last byte, then all last bytes together, and read every
    response (the server closes each connection). ``alongside`` runs in a thread released at
    the same instant (e.g. a maker closing the drop mid-burst); its result is returned."""
    sockets = []
    try:
        for request in requests:
            sock = socket.create_connection(address, timeout=timeout)
            sockets.append(sock)
            sock.sendall(request[:-1])
        gate = threading.Barrier(2) if alongside is not None else None
        outcome: dict[str, Any] = {}
        helper = None
        if alongside is not None:

            def run_alongside() -> None:
                assert gate is not None
                gate.wait()
                try:
                    outcome["value"] = alongside()
                except BaseException as error:  # re-raised in the caller
                    outcome["error"] = error

            helper = threading.Thread(target=run_alongside, name="burst-alongside")
            helper.start()
            gate.wait()
        for sock, request in zip(sockets, requests, strict=True):
            sock.sendall(request[-1:])
        released_at = time.monotonic()
        raws = _read_responses(sockets, timeout=timeout)
        if helper is not None:
            helper.join(timeout)
            if "error" in outcome:
                raise outcome["error"]
    finally:
        for sock in sockets:
            sock.close()
    responses = [parse_response(raw, finished_at=at) for raw, at in raws]
    return Burst(responses, released_at, outcome.get("value"))


def _read_responses(sockets: list[socket.socket], *, timeout: float) -> list[tuple[bytes, float]]:
    buffers: list[list[bytes]] = [[] for _ in sockets]
    finished: list[float] = [0.0] * len(sockets)
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for index, sock in enumerate(sockets):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
        open_count = len(sockets)
        while open_count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{open_count} of {len(sockets)} responses never completed")
            for key, _ in selector.select(remaining):
                index = key.data
                chunk = sockets[index].recv(65536)
                if chunk:
                    buffers[index].append(chunk)
                    continue
                finished[index] = time.monotonic()
                selector.unregister(sockets[index])
                # Close at once: gunicorn's gthread worker lingers on its main thread (up to
                # 2 s) until the client closes, stalling every other connection of the worker.
                sockets[index].close()
                open_count -= 1
    return [(b"".join(chunks), at) for chunks, at in zip(buffers, finished, strict=True)]


__all__ = [
    "Burst",
    "Customer",
    "LiveDrop",
    "Response",
    "Server",
    "ServerFailed",
    "ShopSession",
    "add_batch",
    "build_request",
    "burst",
    "create_customers",
    "csrf_token_in",
    "free_port",
    "gunicorn_command",
    "http_request",
    "libpq_url",
    "login",
    "make_app",
    "migrate",
    "migrated_postgres_database",
    "migrated_sqlite_database",
    "parse_response",
    "seed_live_drop",
    "send_raw",
    "server_env",
    "start_gunicorn",
    "start_threaded_server",
    "testing_config",
    "wait_until_answering",
]

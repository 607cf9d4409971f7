"""The shop as a real server: gunicorn in a subprocess (:func:`start_gunicorn`), or a threaded
werkzeug server in this process (:func:`start_threaded_server`, for SQLite). Everything started
here is stopped cleanly (terminate, wait, close), so no ResourceWarning."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer

import config as settings
from stripe_emulator.server import build_server, serve_in_background
from testkit.rawhttp import HOST, Address, http_request

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"


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


class Server(AbstractContextManager):
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

    def crash(self) -> None:
        """SIGKILL to the master and every worker at once, as when the host dies: nothing gets
        to finish or clean up. Needs ``start_gunicorn(own_process_group=True)``."""
        assert self.process is not None
        assert os.getpgid(self.process.pid) == self.process.pid, "not in a group of its own"
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        # The workers die on their own time; only once they are gone are their sockets closed.
        deadline = time.monotonic() + 10
        while _living_in_group(self.process.pid):
            if time.monotonic() > deadline:
                raise ServerFailed("the killed server's workers did not die within 10 s")
            time.sleep(0.01)

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

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Server {self.url}>"


def _living_in_group(group: int) -> list[int]:
    """Processes of a process group that are not dead (a zombie has closed everything)."""
    living = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        state, process_group = fields[0], int(fields[2])
        if process_group == group and state not in ("Z", "X"):
            living.append(int(stat.parent.name))
    return living


def gunicorn_command(
    port: int,
    *,
    workers: int,
    threads: int,
    app: str = "wsgi:app",
    preload: bool = True,
    reuse_port: bool = False,
    worker_connections: int | None = None,
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
        "--no-control-socket",  # gunicorn ≥ 24 shares one control socket path per user
    ]
    if preload:
        command.append("--preload")
    if worker_connections is not None:  # else gunicorn.conf.py's bound
        command += ["--worker-connections", str(worker_connections)]
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
    worker_connections: int | None = None,
    extra_env: dict[str, str] | None = None,
    startup_timeout: float = 30.0,
    ready_path: str = "/",
    own_process_group: bool = False,
) -> Server:
    """The app under ``gunicorn -w workers --threads threads`` on a free port, answering.

    ``preload`` imports the app once in the master (create_app opens no connection, so the
    forked workers share nothing); ``app`` may name another WSGI module (the benchmarks' apps).
    It is up once ``ready_path`` answers below 500 (``/healthz`` needs no database).
    ``own_process_group`` puts the master and its workers in a process group of their own, so
    :meth:`Server.crash` can kill the whole host at once.
    """
    last_error: Exception | None = None
    for _attempt in range(3):  # a free port can be taken between probing and binding
        port = free_port()
        command = gunicorn_command(
            port,
            workers=workers,
            threads=threads,
            app=app,
            preload=preload,
            reuse_port=reuse_port,
            worker_connections=worker_connections,
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
            process_group=0 if own_process_group else None,
        )
        server = Server(HOST, port, process=process, log_file=log_file, command=command)
        try:
            wait_until_answering(server, timeout=startup_timeout, path=ready_path)
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


def start_threaded_server(app: Flask, *, host: str = HOST) -> Server:
    """``app`` on werkzeug's threaded server (one thread per connection) in this process."""
    wsgi_server = build_server(host, 0, app)
    wsgi_server.daemon_threads = True
    thread = serve_in_background(wsgi_server, f"shop-{wsgi_server.server_port}")
    server = Server(host, wsgi_server.server_port, wsgi_server=wsgi_server, thread=thread)
    wait_until_answering(server, timeout=10)
    return server

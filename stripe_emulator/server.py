"""Serving the emulator on a real socket, in a daemon thread or standalone."""

from __future__ import annotations

import ipaddress
import threading
from contextlib import AbstractContextManager
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from stripe_emulator.app import create_app, get_state
from stripe_emulator.state import EmulatorState


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler without the per-request access log line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def _connectable_host(host: str) -> str:
    """The address clients should dial: loopback when the server listens on every interface."""
    try:
        unspecified = not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host
    return "127.0.0.1" if unspecified else host


class RunningEmulator(AbstractContextManager):
    """An emulator serving HTTP on a daemon thread; stop it with :meth:`stop` or ``with``."""

    def __init__(self, server: BaseWSGIServer, app: Flask, thread: threading.Thread) -> None:
        self.server = server
        self.app = app
        self.thread = thread
        self.host = _connectable_host(server.host)
        self.port: int = server.server_port
        self._stopped = False

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    @property
    def state(self) -> EmulatorState:
        return get_state(self.app)

    def stop(self) -> None:
        """Stop serving, close the listening socket and the background threads (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self.state.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.state.close()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RunningEmulator {self.url}>"


def build_server(host: str, port: int, app: Flask, *, quiet: bool = True) -> BaseWSGIServer:
    """A threaded werkzeug server for ``app`` (one thread per connection)."""
    handler = QuietRequestHandler if quiet else WSGIRequestHandler
    return make_server(host, port, app, threaded=True, request_handler=handler)


def serve_in_thread(
    host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True, **create_app_kwargs: Any
) -> RunningEmulator:
    """Start a real threaded HTTP server for a new emulator; ``port=0`` picks a free port.

    ``create_app_kwargs`` go to :func:`stripe_emulator.create_app` (``webhook_url``,
    ``webhook_secret``, ``api_key_prefix``, ``public_base_url``, ``clock``).
    """
    app = create_app(**create_app_kwargs)
    server = build_server(host, port, app, quiet=quiet)
    thread = serve_in_background(server, f"stripe-emulator-{server.server_port}")
    get_state(app).start()
    return RunningEmulator(server, app, thread)


def serve_in_background(server: BaseWSGIServer, name: str | None = None) -> threading.Thread:
    """Run ``server`` on a daemon thread that notices a shutdown within 50 ms; return it."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    return thread

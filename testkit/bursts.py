"""Synchronized bursts: N requests sent in full except their last byte, then every last byte at
once, so the server sees them arrive together (what an in-process test client cannot do). With
``tls`` the requests go over TLS (to nginx in front of the shop); nginx passes each one on once
it has it whole, so the burst reaches the app hosts together all the same."""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from testkit.rawhttp import Address, Response, connect, parse_response


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
    tls: ssl.SSLContext | None = None,
) -> Burst:
    """Send every request but its last byte, then all last bytes together, and read every
    response (the server closes each connection). ``alongside`` runs in a thread released at
    the same instant (e.g. a maker closing the drop mid-burst); its result is returned."""
    sockets = []
    try:
        for request in requests:
            sock = connect(address, timeout=timeout, tls=tls)
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
                try:
                    chunk = sockets[index].recv(65536)
                except ssl.SSLWantReadError:  # only part of a TLS record has arrived
                    continue
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

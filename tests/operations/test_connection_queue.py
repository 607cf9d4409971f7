"""First come, first served across workers: gunicorn (as ``gunicorn.conf.py`` sets it up) lets
each worker take only the connections its threads can soon start on, so a crowd beyond that
waits in the kernel's one listen queue, in the order it came — not in whichever worker took
it first (docs/OPERATIONS.md, "A crowd at the door")."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from testkit import rawhttp, servers

pytestmark = pytest.mark.concurrency

WORKERS, THREADS = 2, 2
PER_WORKER = THREADS + 12  # its threads' connections and twelve more (gunicorn.conf.py)
BEYOND = 6


def waiting_to_be_accepted(port: int) -> int:
    """Connections in the listen queue of the socket on ``port``, from the kernel's own table
    (a listening socket's ``rx_queue``)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "0A" and int(local.rpartition(":")[2], 16) == port:
            return int(fields[4].partition(":")[2], 16)
    raise AssertionError(f"nothing listens on port {port}")


def test_a_crowd_beyond_what_the_workers_can_start_on_waits_in_the_kernels_queue(
    ops_database_url,
):
    server = servers.start_gunicorn(ops_database_url, workers=WORKERS, threads=THREADS)
    try:
        port = server.address[1]
        assert waiting_to_be_accepted(port) == 0
        with ExitStack() as crowd:
            for _ in range(WORKERS * PER_WORKER + BEYOND):  # connect, say nothing (yet)
                crowd.enter_context(socket.create_connection(server.address, timeout=5))
            deadline = time.monotonic() + 1.5  # idle connections are dropped after 2 s
            waiting = waiting_to_be_accepted(port)
            while waiting != BEYOND and time.monotonic() < deadline:
                time.sleep(0.02)
                waiting = waiting_to_be_accepted(port)
            assert waiting == BEYOND  # gunicorn's own default would have taken them all
        assert rawhttp.http_request(server.address, "GET", "/healthz", timeout=10).status == 200
    finally:
        server.stop()

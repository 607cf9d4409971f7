"""Closed-loop HTTP/1.1 load generator, run as its own process by ``bench/flash_crowd.py``.

Reads a JSON job on stdin — ``{"host", "port", "seconds", "warmup", "requests": [str, ...]}``,
one request (latin-1 text, keep-alive) per connection — and keeps every connection busy: send,
read the whole response, send again. With ``"follow": [str, ...]`` (a GET per connection with a
``{location}`` placeholder) a 303 is followed once, as a browser does, and the pair counts as one
answer: the follow-up's status, timed from the first request. Writes one JSON line: statuses,
latencies (ms) of the responses that started after the warm-up, errors, and its own CPU time,
so a reader can tell whether the generator itself was the bottleneck.

asyncio protocols (no streams, no HTTP library) keep the generator's CPU cost per request low.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter


class Stats:
    def __init__(self, measure_from: float) -> None:
        self.measure_from = measure_from
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.bodies: dict[int, str] = {}  # one sample body per unexpected status


class Client(asyncio.Protocol):
    """One keep-alive connection sending the same request again as soon as it is answered."""

    def __init__(
        self,
        request: bytes,
        follow: str | None,
        stats: Stats,
        stop_at: float,
        done: asyncio.Future,
    ) -> None:
        self.request = request
        self.follow = follow
        self.following = False
        self.stats = stats
        self.stop_at = stop_at
        self.done = done
        self.buffer = bytearray()
        self.started = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        if time.perf_counter() >= self.stop_at:
            self._finish()
            return
        self.buffer.clear()
        self.started = time.perf_counter()
        self.following = False
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buffer[:head_end]).decode("latin-1")
        lines = head.split("\r\n")
        length = 0
        close = False
        location = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
            elif name == "location":
                location = value.strip()
        if len(self.buffer) < head_end + 4 + length:
            return
        status = int(lines[0].split(" ", 2)[1])
        if status == 303 and self.follow and not self.following and not close:
            self.following = True
            self.buffer.clear()
            assert self.transport is not None
            self.transport.write(self.follow.replace("{location}", location).encode("latin-1"))
            return
        finished = time.perf_counter()
        if self.started >= self.stats.measure_from:
            self.stats.statuses[status] += 1
            self.stats.latencies.append((finished - self.started) * 1000)
        if status >= 400 and status not in (409,) and status not in self.stats.bodies:
            body = bytes(self.buffer[head_end + 4 : head_end + 4 + length])
            self.stats.bodies[status] = body.decode("utf-8", "replace")[:400]
        if close:
            self.stats.errors["server closed the connection"] += 1
            self._finish()
            return
        self._send()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.stats.errors[f"connection lost: {exc!r}"] += 1
            self.done.set_result(None)

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)


async def run(job: dict) -> dict:
    loop = asyncio.get_running_loop()
    begin = time.perf_counter()
    stats = Stats(measure_from=begin + job["warmup"])
    stop_at = begin + job["warmup"] + job["seconds"]
    finished = []
    follows = job.get("follow") or [None] * len(job["requests"])
    for text, follow in zip(job["requests"], follows, strict=True):
        done = loop.create_future()
        finished.append(done)
        request = text.encode("latin-1")
        try:
            await loop.create_connection(
                lambda request=request, follow=follow, done=done: Client(
                    request, follow, stats, stop_at, done
                ),
                job["host"],
                job["port"],
            )
        except OSError as error:
            stats.errors[f"connect: {error!r}"] += 1
            done.set_result(None)
    await asyncio.wait_for(asyncio.gather(*finished), timeout=job["warmup"] + job["seconds"] + 60)
    measured = time.perf_counter() - stats.measure_from
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": measured,
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "latencies_ms": stats.latencies,
        "errors": dict(stats.errors),
        "bodies": {str(k): v for k, v in stats.bodies.items()},
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "wall_seconds": time.perf_counter() - begin,
    }


def main() -> None:
    job = json.loads(sys.stdin.read())
    result = asyncio.run(run(job))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

"""HTTP/1.1 load generator, run as its own process by ``bench/flash_crowd.py``.

Reads a JSON job on stdin — ``{"host", "port", "seconds", "warmup", "requests": [str, ...]}``,
one request (latin-1 text, keep-alive) per connection — and keeps every connection busy: send,
read the whole response, send again (a closed loop). With ``"follow": [str, ...]`` (a GET per
connection with a ``{location}`` placeholder) a 303 is followed once, as a browser does, and the
pair counts as one answer: the follow-up's status, timed from the first request.

With ``"rate": r`` it is an open loop instead: requests fall due at random times, ``r`` a second
on average (a Poisson process, as independent customers arrive), each goes out on the first idle
connection, and its latency counts from when it fell due — a request kept waiting because every
connection was busy is slow, not missing.

Writes one JSON line: statuses, latencies (ms) of the responses that started after the warm-up,
errors, and its own CPU time, so a reader can tell whether the generator itself was the
bottleneck.

asyncio protocols (no streams, no HTTP library) keep the generator's CPU cost per request low.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from collections import Counter, deque


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
        pacer: Pacer | None = None,
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
        self.pacer = pacer

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._next()

    def _next(self) -> None:
        """Closed loop: send again now. Open loop: take the next due request, or wait idle."""
        if time.perf_counter() >= self.stop_at:
            self._finish()
        elif self.pacer is None:
            self._send(time.perf_counter())
        else:
            self.pacer.ready(self)

    def _send(self, due: float) -> None:
        self.buffer.clear()
        self.started = due
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
        self._next()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.stats.errors[f"connection lost: {exc!r}"] += 1
            self.done.set_result(None)

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)


class Pacer:
    """Open loop: requests fall due ``rate`` a second at random; each goes to an idle client."""

    def __init__(self, rate: float, stop_at: float) -> None:
        self.rate = rate
        self.stop_at = stop_at
        self.idle: deque[Client] = deque()
        self.due: deque[float] = deque()
        self.random = random.Random(7)  # arrival times, not secrets

    def ready(self, client: Client) -> None:
        if self.due:
            client._send(self.due.popleft())
        else:
            self.idle.append(client)

    async def run(self, begin: float, stats: Stats) -> None:
        due = begin
        while True:
            due += self.random.expovariate(self.rate)
            if due >= self.stop_at:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            if self.idle:
                self.idle.popleft()._send(due)
            else:
                self.due.append(due)
        await asyncio.sleep(max(0.0, self.stop_at - time.perf_counter()))
        if self.due:  # still waiting for a connection at the end: the shop fell behind
            stats.errors["due but never sent: every connection busy"] += len(self.due)
        while self.idle:
            self.idle.popleft()._finish()


async def run(job: dict) -> dict:
    loop = asyncio.get_running_loop()
    begin = time.perf_counter()
    stats = Stats(measure_from=begin + job["warmup"])
    stop_at = begin + job["warmup"] + job["seconds"]
    finished = []
    pacer = Pacer(job["rate"], stop_at) if job.get("rate") else None
    follows = job.get("follow") or [None] * len(job["requests"])
    for text, follow in zip(job["requests"], follows, strict=True):
        done = loop.create_future()
        finished.append(done)
        request = text.encode("latin-1")
        try:
            await loop.create_connection(
                lambda request=request, follow=follow, done=done: Client(
                    request, follow, stats, stop_at, done, pacer
                ),
                job["host"],
                job["port"],
            )
        except OSError as error:
            stats.errors[f"connect: {error!r}"] += 1
            done.set_result(None)
    if pacer is not None:
        finished.append(asyncio.ensure_future(pacer.run(time.perf_counter(), stats)))
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

"""The crowd of ``bench/flash_crowd.py --phases crowd``, run as its own process.

Reads a JSON job on stdin — ``{"host", "port", "emulator", "slug", "seconds", "pay_share",
"seed", "poll", "proxy", "customers": [{"cookies": {...}}, ...]}`` — and plays every customer
once, as a person with a browser would: arrive at a random instant within ``seconds``, open the
drop page, wait in the line if sent there, buy one unit when let in, then pay on the emulator (a
``pay_share`` of them) or give the hold back (the rest), and stop at the first "sold out". One
request per connection.

Waiting in line is what the queue page does in a browser with JavaScript: reload when its meta
refresh says, and in between read the stock JSON every ``poll`` seconds as ``static/js/line.js``
does (0: no script) — "sold out" in place the moment every unit is sold for good (the meta
refresh then lands on the 409). The script sends no cookies, so with ``proxy`` the polls go
through a micro-cache like ``deploy/nginx``'s (one request at a time to the shop, its answer
shared for its ``s-maxage``, the stale one served while it is renewed); without it every poll
reaches the shop.

Writes one JSON line: every request that reached the shop (kind, status, start and end in
seconds from the start), every customer's arrival, hold, payment and "sold out" times, and how
many polls the micro-cache answered.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import resource
import sys
import time
from urllib.parse import urlencode, urlsplit

REFRESH = re.compile(r'http-equiv="refresh" content="([0-9]+)[;"]')  # its url: the queue's
LINE = re.compile(r'data-line-stock-url="([^"]+)"')
MAX_AGE = re.compile(r"s-maxage=([0-9]+)")
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
BUY = re.compile(r'action="/checkout/batches/([0-9]+)"')
SESSION = re.compile(r"/checkout/(cs_[A-Za-z0-9_]+)")


class Crowd:
    def __init__(self, job: dict) -> None:
        self.host = job["host"]
        self.port = job["port"]
        emulator = urlsplit(job["emulator"])
        self.emulator = (emulator.hostname, emulator.port)
        self.slug = job["slug"]
        self.pay_share = job["pay_share"]
        self.random = random.Random(job["seed"])
        self.poll = float(job.get("poll") or 0)
        self.started = time.perf_counter()
        self.requests: list[tuple[str, int, float, float]] = []
        self.errors: dict[str, int] = {}
        self.cache = MicroCache(self) if job.get("proxy") else None

    def clock(self) -> float:
        return time.perf_counter() - self.started

    async def send(
        self,
        kind: str,
        method: str,
        path: str,
        cookies: dict[str, str],
        *,
        fields: dict | None = None,
        to: tuple[str, int] | None = None,
        accept: str = "text/html",
    ) -> tuple[int, dict[str, str], str]:
        host, port = to or (self.host, self.port)
        body = urlencode(fields).encode() if fields is not None else b""
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Connection: close",
            f"Accept: {accept}",
        ]
        if cookies:
            head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
        if fields is not None:
            head.append("Content-Type: application/x-www-form-urlencoded")
        if method != "GET":
            head.append(f"Content-Length: {len(body)}")
        start = self.clock()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            raw = await reader.read()
        finally:
            writer.close()
        end = self.clock()
        header_block, _, payload = raw.partition(b"\r\n\r\n")
        lines = header_block.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "set-cookie":
                cookie_name, _, rest = value.strip().partition("=")
                cookies[cookie_name] = rest.split(";", 1)[0]
            else:
                headers[name.strip().lower()] = value.strip()
        self.requests.append((kind, status, start, end))
        return status, headers, payload.decode("utf-8", "replace")

    async def stock(self, path: str) -> dict | None:
        """The stock JSON as line.js reads it: no cookies, through the micro-cache if any."""
        try:
            if self.cache is not None:
                status, body = await self.cache.get(path)
            else:
                status, _, body = await self.send(
                    "stock", "GET", path, {}, accept="application/json"
                )
            return json.loads(body) if status == 200 else None
        except (OSError, ValueError):  # the script's catch: the next poll or the reload will do
            return None

    async def wait_in_line(self, page: str, refresh: int, seen: dict) -> None:
        """On the queue page until its meta refresh is due: with the script, read the stock
        every ``poll`` seconds; "sold out for good" is the news (told)."""
        due = self.clock() + refresh
        line = LINE.search(page) if self.poll > 0 else None
        if line is None:
            await asyncio.sleep(refresh)
            return
        path = line.group(1)
        polled = self.clock()
        while seen["told"] is None:
            polled += self.poll
            if polled >= due:
                break
            await asyncio.sleep(max(0.0, polled - self.clock()))
            data = await self.stock(path)
            if data is not None and data.get("sold_out_for_good"):
                seen["told"] = self.clock()  # shown in place; the page stays till its reload
        await asyncio.sleep(max(0.0, due - self.clock()))

    async def customer(self, index: int, cookies: dict[str, str], arrive: float) -> dict:
        await asyncio.sleep(max(0.0, arrive - self.clock()))
        seen = {"index": index, "arrived": self.clock(), "held": None, "told": None, "paid": None}
        drop = f"/drops/{self.slug}"
        queue = f"{drop}/queue"
        status, headers, page = await self.send("page", "GET", drop, cookies)
        seen["answered"] = self.clock()  # the line gave the place while it served this
        for _ in range(10_000):
            location = urlsplit(headers.get("location", "")).path
            if status == 303 and location == queue:  # sent to the line
                status, headers, page = await self.send("queue", "GET", queue, cookies)
            elif status == 200 and (refresh := REFRESH.search(page)):  # waiting: reload later
                await self.wait_in_line(page, int(refresh.group(1)), seen)
                status, headers, page = await self.send("queue", "GET", queue, cookies)
            elif status == 303 and location == drop:  # let in
                status, headers, page = await self.send("page", "GET", drop, cookies)
            else:
                break
        if status == 409:  # told in line: sold out for good
            seen["told"] = seen["told"] or self.clock()
            return seen
        buy = BUY.search(page)
        token = CSRF.search(page)
        if status != 200 or buy is None or token is None:
            seen["told"] = self.clock()  # the page offers nothing to buy: sold out
            return seen
        status, headers, _ = await self.send(
            "hold",
            "POST",
            f"/checkout/batches/{buy.group(1)}",
            cookies,
            fields={"csrf_token": token.group(1), "quantity": "1"},
        )
        if status != 303:
            seen["told"] = self.clock()
            return seen
        seen["held"] = self.clock()
        pay_path = urlsplit(headers["location"]).path
        status, headers, _ = await self.send("pay", "GET", pay_path, cookies)
        found = SESSION.search(headers.get("location", ""))
        if status != 303 or found is None:
            return seen
        session_id = found.group(1)
        if self.random.random() < self.pay_share:
            seen["paid"] = self.clock()  # the unit is sold for good from here on, at the latest
            await self.send(
                "stripe",
                "POST",
                f"/_emulator/sessions/{session_id}/complete",
                {},
                fields={},
                to=self.emulator,
            )
            await self.send("paid", "GET", f"/checkout/success?session_id={session_id}", cookies)
        else:  # changes their mind: the hold goes back at once
            order = pay_path.split("/")[3]
            status, _, page = await self.send(
                "cancel", "GET", f"/checkout/orders/{order}/cancel", cookies
            )
            token = CSRF.search(page)
            if token is not None:
                await self.send(
                    "cancel",
                    "POST",
                    f"/checkout/orders/{order}/cancel",
                    cookies,
                    fields={"csrf_token": token.group(1)},
                )
        return seen


class MicroCache:
    """What deploy/nginx does for the stock JSON (``proxy_cache_lock``, ``proxy_cache_use_stale
    updating``, the response's ``s-maxage``): one request at a time reaches the shop, and its
    answer is shared until it expires; while it is renewed the others get the old one (or wait
    for the first)."""

    def __init__(self, crowd: Crowd) -> None:
        self.crowd = crowd
        self.entries: dict[str, tuple[float, tuple[int, str]]] = {}
        self.renewing: dict[str, asyncio.Future] = {}
        self.hits = 0

    async def get(self, path: str) -> tuple[int, str]:
        entry = self.entries.get(path)
        if entry is not None and (entry[0] > self.crowd.clock() or path in self.renewing):
            self.hits += 1
            return entry[1]
        if path in self.renewing:
            self.hits += 1
            return await self.renewing[path]
        renewed = self.renewing[path] = asyncio.get_running_loop().create_future()
        answer: tuple[int, str] = (0, "")
        try:
            status, headers, body = await self.crowd.send(
                "stock", "GET", path, {}, accept="application/json"
            )
            answer = (status, body)
            seconds = MAX_AGE.search(headers.get("cache-control", ""))
            if status == 200 and seconds:
                self.entries[path] = (self.crowd.clock() + int(seconds.group(1)), answer)
        finally:
            del self.renewing[path]
            renewed.set_result(answer)
        return answer


async def run(job: dict) -> dict:
    crowd = Crowd(job)
    arrivals = sorted(crowd.random.uniform(0, job["seconds"]) for _ in job["customers"])
    order = list(range(len(job["customers"])))
    crowd.random.shuffle(order)
    tasks = [
        crowd.customer(n, dict(job["customers"][n]["cookies"]), arrivals[i])
        for i, n in enumerate(order)
    ]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    customers = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            key = type(outcome).__name__
            crowd.errors[key] = crowd.errors.get(key, 0) + 1
        else:
            customers.append(outcome)
    return {
        "requests": crowd.requests,
        "customers": customers,
        "errors": crowd.errors,
        "proxy_hits": crowd.cache.hits if crowd.cache is not None else 0,
        "seconds": crowd.clock(),
        "cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime
        + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
    }


def main() -> None:
    job = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(run(job))))


if __name__ == "__main__":
    main()

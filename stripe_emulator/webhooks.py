"""Background webhook delivery with Stripe's signature scheme (docs/STRIPE.md §5, §6).

Events are queued by the state object and POSTed by one daemon thread, so an API response never
waits for a receiver. Each attempt is signed afresh::

    Stripe-Signature: t=<unix now>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>,v0=<junk>

with the whole ``whsec_…`` string as the HMAC key and ``t`` taken from real wall time (receivers
check it against their own clock). A non-2xx answer, a timeout or a connection error is retried
after ``retry_seconds * 2**(attempt-1)`` seconds until ``max_attempts`` attempts were made.

Test switches (``POST /_emulator/webhooks``): ``duplicate`` sends every event twice;
``out_of_order`` collects the events raised within ``reorder_window_seconds`` and sends each batch
newest first; ``delay_seconds`` holds every first attempt back; ``fail_first`` makes the first N
attempts of every event fail without reaching the receiver (logged as "injected failure").
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import hmac
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


@dataclass
class WebhookConfig:
    """Where and how events are delivered; every field can be changed at run time."""

    url: str | None = None
    secret: str = "whsec_emulator"
    duplicate: bool = False
    out_of_order: bool = False
    delay_seconds: float = 0.0
    fail_first: int = 0
    max_attempts: int = 4
    retry_seconds: float = 0.5
    timeout_seconds: float = 5.0
    reorder_window_seconds: float = 0.2

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "url": (str, type(None)),
    "secret": (str,),
    "duplicate": (bool,),
    "out_of_order": (bool,),
    "delay_seconds": (int, float),
    "fail_first": (int,),
    "max_attempts": (int,),
    "retry_seconds": (int, float),
    "timeout_seconds": (int, float),
    "reorder_window_seconds": (int, float),
}


def check_config_changes(changes: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first unknown key or badly typed value."""
    for key, value in changes.items():
        if key not in _FIELD_TYPES:
            raise ValueError(f"unknown webhook setting: {key}")
        expected = _FIELD_TYPES[key]
        if isinstance(value, bool) and bool not in expected:
            raise ValueError(f"{key} must be a number")
        if not isinstance(value, expected):
            raise ValueError(f"{key} has the wrong type")
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"{key} must not be negative")
    if changes.get("max_attempts") == 0:
        raise ValueError("max_attempts must be at least 1")


def sign(payload: str, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``payload`` signed at ``timestamp``."""
    signed = f"{timestamp}.{payload}".encode()
    v1 = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    v0 = hmac.new(secrets.token_bytes(16), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={v1},v0={v0}"


@dataclass(order=True)
class _Job:
    due: float
    order: int
    event_id: str = field(compare=False)
    attempt: int = field(compare=False, default=1)
    generation: int = field(compare=False, default=0)


class WebhookDispatcher:
    """A queue of event deliveries worked off by one daemon thread.

    ``event_for(event_id)`` returns the event to send (or ``None`` if it no longer exists);
    ``on_delivered(event_id)`` is called after a 2xx answer. Neither is called with the
    dispatcher's lock held.
    """

    def __init__(
        self,
        config: WebhookConfig,
        *,
        event_for: Callable[[str], dict[str, Any] | None],
        on_delivered: Callable[[str], None],
    ) -> None:
        self._initial = dataclasses.replace(config)
        self.config = config
        self._event_for = event_for
        self._on_delivered = on_delivered
        self._cond = threading.Condition()
        self._heap: list[_Job] = []
        self._held: list[str] = []
        self._held_until = 0.0
        self._in_flight = 0
        self._order = itertools.count()
        self._generation = 0
        self._log: list[dict[str, Any]] = []
        self._stopping = False
        self._thread: threading.Thread | None = None

    # --- configuration -----------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return bool(self.config.url)

    def configure(self, **changes: Any) -> WebhookConfig:
        """Change settings (see :class:`WebhookConfig`); raises ``ValueError`` on bad input."""
        check_config_changes(changes)
        with self._cond:
            self.config = dataclasses.replace(self.config, **changes)
            self._cond.notify_all()
            return dataclasses.replace(self.config)

    def reset(self) -> None:
        """Forget queued deliveries and the log; restore the settings given at creation."""
        with self._cond:
            self._generation += 1
            self._heap.clear()
            self._held.clear()
            self._log.clear()
            self.config = dataclasses.replace(self._initial)
            self._cond.notify_all()

    # --- queueing -------------------------------------------------------------------------

    def enqueue(self, event_id: str) -> None:
        """Queue the first delivery of a new event (twice when ``duplicate`` is on)."""
        with self._cond:
            if not self.config.url:
                return
            copies = 2 if self.config.duplicate else 1
            for _ in range(copies):
                if self.config.out_of_order:
                    if not self._held:
                        self._held_until = time.monotonic() + self.config.reorder_window_seconds
                    self._held.append(event_id)
                else:
                    self._push(event_id, time.monotonic() + self.config.delay_seconds)
            self._cond.notify_all()
        self.start()

    def resend(self, event_id: str) -> None:
        """Queue one more delivery of an existing event, right away."""
        with self._cond:
            self._push(event_id, time.monotonic())
            self._cond.notify_all()
        self.start()

    def _push(self, event_id: str, due: float, attempt: int = 1) -> None:
        job = _Job(due, next(self._order), event_id, attempt, self._generation)
        heapq.heappush(self._heap, job)

    def _release_held(self, now: float) -> None:
        if self._held and now >= self._held_until:
            due = now + self.config.delay_seconds
            for event_id in reversed(self._held):
                self._push(event_id, due)
            self._held.clear()

    # --- inspection -----------------------------------------------------------------------

    def deliveries(self) -> list[dict[str, Any]]:
        """Every attempt so far, oldest first."""
        with self._cond:
            return [dict(entry) for entry in self._log]

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + len(self._held) + self._in_flight

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued, held or in flight; False if ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._held or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # --- the worker ---------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(
                target=self._run, name="stripe-emulator-webhooks", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                job = None
                while not self._stopping:
                    now = time.monotonic()
                    self._release_held(now)
                    if self._heap and self._heap[0].due <= now:
                        job = heapq.heappop(self._heap)
                        break
                    wake = [self._heap[0].due] if self._heap else []
                    if self._held:
                        wake.append(self._held_until)
                    self._cond.wait(min(wake) - now if wake else None)
                if self._stopping or job is None:
                    return
                if job.generation != self._generation:
                    self._cond.notify_all()
                    continue
                self._in_flight += 1
                config = dataclasses.replace(self.config)
            try:
                delivered = self._attempt(job, config)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    if (
                        not delivered
                        and job.generation == self._generation
                        and job.attempt < config.max_attempts
                    ):
                        wait = config.retry_seconds * 2 ** (job.attempt - 1)
                        self._push(job.event_id, time.monotonic() + wait, job.attempt + 1)
                    self._cond.notify_all()

    def _attempt(self, job: _Job, config: WebhookConfig) -> bool:
        event = self._event_for(job.event_id)
        if event is None or not config.url:
            return True  # nothing (left) to deliver
        entry: dict[str, Any] = {
            "event_id": job.event_id,
            "event_type": event["type"],
            "attempt": job.attempt,
            "url": config.url,
            "status": None,
            "ok": False,
            "error": None,
            "at": time.time(),
        }
        if job.attempt <= config.fail_first:
            entry["error"] = "injected failure (fail_first)"
        else:
            payload = json.dumps(event, indent=2)
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
                "Stripe-Signature": sign(payload, config.secret, timestamp),
                "Cache-Control": "no-cache",
            }
            started = time.monotonic()
            try:
                response = requests.post(
                    config.url,
                    data=payload.encode("utf-8"),
                    headers=headers,
                    timeout=config.timeout_seconds,
                    allow_redirects=False,
                )
                entry["status"] = response.status_code
                entry["ok"] = 200 <= response.status_code < 300
                response.close()
            except requests.RequestException as error:
                entry["error"] = f"{type(error).__name__}: {error}"
            entry["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        with self._cond:
            if job.generation == self._generation:
                self._log.append(entry)
        if entry["ok"]:
            self._on_delivered(job.event_id)
        return bool(entry["ok"])

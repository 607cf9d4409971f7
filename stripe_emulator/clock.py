"""The emulator's controllable clock.

Every timestamp the emulator hands out (``created``, ``expires_at``, expiry sweeps, idempotency
key ages) comes from one :class:`Clock`. By default it follows wall time; tests move it forward
with :meth:`Clock.advance` (or ``POST /_emulator/clock/advance``) instead of sleeping.
Webhook signatures deliberately use real wall time, because receivers verify ``t`` against theirs.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Unix time in seconds: wall time (or a frozen start) plus an offset that only grows."""

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._start = start
        self._offset = 0.0

    @property
    def frozen(self) -> bool:
        """True when the clock stands still unless advanced."""
        return self._start is not None

    def time(self) -> float:
        """Current emulator time as a float."""
        with self._lock:
            base = self._start if self._start is not None else time.time()
            return base + self._offset

    def now(self) -> int:
        """Current emulator time in whole Unix seconds (what Stripe objects carry)."""
        return int(self.time())

    @property
    def offset(self) -> float:
        """Seconds added to the base time by :meth:`advance`."""
        with self._lock:
            return self._offset

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds`` (>= 0) and return the new :meth:`now`."""
        if seconds < 0:
            raise ValueError("the emulator clock cannot go backwards")
        with self._lock:
            self._offset += seconds
        return self.now()

    def reset(self) -> None:
        """Drop every advance made so far."""
        with self._lock:
            self._offset = 0.0

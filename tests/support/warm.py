"""Warm reads, measured whatever the machine's speed.

A drop page's shared render is keyed by the minute (``page_cache.page_key``: countdowns print
minutes) and the shared numbers live ``page_cache.STATE_SECONDS``. A test that reads once to warm
the caches and then measures a warm read (no query, no Flask, a 304) must do both inside one
minute and one life of the numbers; on a slow or busy machine a cold first render alone can
outlast a second, and any test may start a moment before the minute turns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from flask import current_app

from shop import clock, page_cache

T = TypeVar("T")

MARGIN = 5.0  # seconds of the minute a warm-up and the read it warms may take at most
FRESH = page_cache.STATE_SECONDS / 2  # numbers at most this old when the warm-up is done
TRIES = 5


def warmed(read: Callable[[], T], *slugs: str) -> T:
    """``read()`` as a warm-up, its answer returned once the drops' shared numbers it left are
    still young enough for the read that follows to find them. First waits for the next minute
    when fewer than ``MARGIN`` seconds are left of this one; when the warm-up was slow, drops
    the numbers (as a second passing does) and reads again, now with everything compiled."""
    now = clock.now()
    left = 60 - now.second - now.microsecond / 1_000_000
    if left < MARGIN:
        time.sleep(left + 0.05)
    for _ in range(TRIES):
        answer = read()
        states = [page_cache.cached_state(current_app, slug) for slug in slugs]
        if all(s and (clock.now() - s.read_at).total_seconds() < FRESH for s in states):
            return answer
        current_app.extensions["shop_page_cache"].delete([f"state:{slug}" for slug in slugs])
    raise AssertionError(f"the warm-up never finished within {FRESH} s of reading the numbers")

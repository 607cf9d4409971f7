"""Charts drawn on the server: the geometry of a bar chart, which a template turns into SVG.

No script and no CDN: the page carries the picture, its title and description, and the same
numbers as a table. Pure functions of their inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 30  # room for the axes' labels


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    start: datetime


@dataclass(frozen=True)
class Tick:
    y: float
    value: int


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: int
    right: float  # x of the plot's right edge
    baseline: float  # y of the value 0
    bars: list[Bar]
    ticks: list[Tick]  # horizontal grid lines with their values
    labels: list[tuple[float, datetime]]  # x (middle of a bar) and the time it starts


def nice_top(value: int) -> int:
    """The grid's top: the smallest 1, 2 or 5 times a power of ten at least ``value`` (>= 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def bar_chart(series: list[tuple[datetime, int]], *, labels: int = 4) -> BarChart:
    """Bars for ``series`` (start of each bucket, value), grid lines at whole quarters of the
    top and up to ``labels`` time labels spread along the bottom."""
    top = nice_top(max((value for _, value in series), default=0))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / max(1, len(series))
    gap = min(2.0, slot / 5)
    bars = []
    for i, (start, value) in enumerate(series):
        height = plot_height * value / top
        bars.append(
            Bar(
                x=round(LEFT + i * slot + gap / 2, 2),
                y=round(TOP + plot_height - height, 2),
                width=round(slot - gap, 2),
                height=round(height, 2),
                value=value,
                start=start,
            )
        )
    ticks = [
        Tick(y=round(TOP + plot_height - plot_height * k / 4, 2), value=top * k // 4)
        for k in range(5)
        if top * k % 4 == 0  # whole numbers only: units are counted
    ]
    every = max(1, math.ceil(len(series) / labels))
    shown = [
        (round(LEFT + i * slot + slot / 2, 2), start)
        for i, (start, _) in enumerate(series)
        if i % every == 0
    ]
    return BarChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        baseline=TOP + plot_height,
        bars=bars,
        ticks=ticks,
        labels=shown,
    )

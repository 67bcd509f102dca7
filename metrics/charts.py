"""Charts as server-rendered SVG: the geometry of a stacked bar chart (counts per bucket)
or of lines (durations, queue depths), with axes, units, a <title> on every mark for its
value on hover, and the same numbers as a table for readers who cannot see the chart.
`templates/metrics/_chart.html` draws what these functions return; no script, no style
attribute: colours come from CSS classes (static/stepchange/console.css)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 10, 24
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
TICKS = 4
# What a table shows for a bucket without the value (an en dash).
NONE_SHOWN = "\u2013"
X_LABELS = 6


@dataclass(frozen=True)
class Series:
    """One thing drawn: its name in the legend and table, and its CSS class."""

    label: str
    css: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Line:
    css: str
    label: str
    points: str
    dots: list[Mark]


@dataclass
class Chart:
    title: str
    unit: str
    description: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    baseline: int = TOP + PLOT_H
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    bars: list[Mark] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[str, list[str]]] = field(default_factory=list)
    empty: bool = True


def _nice_top(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1
    power = 1.0
    while power * 10 <= value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _whole_top(value: float) -> float:
    """A top for counts: every tick of the axis a whole number."""
    top = _nice_top(value)
    return float(-(-top // TICKS) * TICKS)


def _x_label(at: datetime, resolution: int) -> str:
    return at.strftime(
        "%m-%d" if resolution >= 86400 else "%H:%M" if resolution < 3600 else "%m-%d %H:%M"
    )


def _frame(
    chart: Chart,
    starts: Sequence[datetime],
    resolution: int,
    top: float,
    show: Callable[[float], str],
) -> float:
    """Axes of the chart; the width of one bucket."""
    slot = PLOT_W / max(len(starts), 1)
    chart.y_ticks = [
        (TOP + PLOT_H - PLOT_H * i / TICKS, show(top * i / TICKS)) for i in range(TICKS + 1)
    ]
    every = max(1, round(len(starts) / X_LABELS))
    chart.x_ticks = [
        (LEFT + slot * i + slot / 2, _x_label(at, resolution))
        for i, at in enumerate(starts)
        if i % every == 0
    ]
    return slot


def _when(at: datetime, resolution: int) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC" if resolution < 86400 else "%Y-%m-%d")


def stacked_bars(
    title: str, unit: str, starts: Sequence[datetime], resolution: int, series: Sequence[Series]
) -> Chart:
    """Counts per bucket, one segment per series, stacked from the bottom in their order."""
    chart = Chart(title, unit, f"{title} per bucket, in {unit}")
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(starts))]
    top = _whole_top(max(totals, default=0))
    slot = _frame(chart, starts, resolution, top, _count)
    for i, at in enumerate(starts):
        base: float = TOP + PLOT_H
        for s in series:
            value = s.values[i] or 0
            if not value:
                continue
            height = PLOT_H * value / top
            base -= height
            label = f"{_when(at, resolution)} · {s.label}: {_count(value)} {unit}"
            chart.bars.append(
                Mark(LEFT + slot * i + 0.5, base, max(slot - 1, 1), height, s.css, label)
            )
    _table(chart, starts, resolution, series, lambda v: _count(v or 0))
    chart.empty = not any(totals)
    return chart


def lines(
    title: str,
    unit: str,
    starts: Sequence[datetime],
    resolution: int,
    series: Sequence[Series],
    show: Callable[[float], str],
    *,
    whole: bool = False,
) -> Chart:
    """A line per series; a bucket without a value leaves a gap in its line. `whole`:
    the values are counts, and so is every tick."""
    chart = Chart(title, unit, f"{title} per bucket")
    values = [v for s in series for v in s.values if v is not None]
    top = (_whole_top if whole else _nice_top)(max(values, default=0))
    slot = _frame(chart, starts, resolution, top, show)
    for s in series:
        dots: list[Mark] = []
        runs: list[list[str]] = []
        run: list[str] = []
        for i, value in enumerate(s.values):
            if value is None:
                if run:
                    runs.append(run)
                run = []
                continue
            x, y = LEFT + slot * i + slot / 2, TOP + PLOT_H - PLOT_H * value / top
            run.append(f"{x:.1f},{y:.1f}")
            label = f"{_when(starts[i], resolution)} · {s.label}: {show(value)}"
            dots.append(Mark(x, y, 0, 0, s.css, label))
        if run:
            runs.append(run)
        points = " M".join(" L".join(r) for r in runs)
        chart.lines.append(Line(s.css, s.label, f"M{points}" if runs else "", dots))
    _table(chart, starts, resolution, series, lambda v: NONE_SHOWN if v is None else show(v))
    chart.empty = not values
    return chart


def _table(
    chart: Chart,
    starts: Sequence[datetime],
    resolution: int,
    series: Sequence[Series],
    show: Callable[[float | None], str],
) -> None:
    chart.legend = [(s.css, s.label) for s in series]
    chart.columns = [s.label for s in series]
    chart.rows = [
        (_when(at, resolution), [show(s.values[i]) for s in series]) for i, at in enumerate(starts)
    ]


def _count(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def duration(ms: float | None) -> str:
    """A duration for people: ms under a second, then s, min, h."""
    if ms is None:
        return NONE_SHOWN
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.3g} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.3g} min"
    return f"{ms / 3_600_000:.3g} h"

"""Server-rendered SVG charts: geometry computed here, drawn by templates/tracing/chart.html.

Only numbers and escaped labels reach the SVG, and no style attributes (the CSP forbids
them): colours come from CSS classes in static/tracing/tracing.css.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

LEFT, RIGHT, TOP, BOTTOM = 52, 8, 10, 22


@dataclass
class Bar:
    x: float
    y: float
    w: float
    h: float
    cls: str
    title: str


@dataclass
class Line:
    cls: str
    points: str
    title: str
    dots: list[tuple[float, float, str]] = field(default_factory=list)


@dataclass
class Tick:
    pos: float
    label: str


@dataclass
class Chart:
    title: str
    width: int
    height: int
    legend: list[tuple[str, str]]
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    empty: bool = True

    @property
    def plot_left(self) -> int:
        return LEFT

    @property
    def plot_right(self) -> int:
        return self.width - RIGHT

    @property
    def plot_bottom(self) -> int:
        return self.height - BOTTOM


def nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def short_number(value: float, unit: str = "") -> str:
    if unit == "ms":
        return f"{value / 1000:.3g} s" if value >= 1000 else f"{value:.3g} ms"
    if unit == "$":
        return f"${value:.4g}"
    if unit == "%":
        return f"{value:.3g}%"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _frame(chart: Chart, labels: list[str], top: float, unit: str) -> tuple[float, float]:
    plot_w = chart.plot_right - LEFT
    plot_h = chart.plot_bottom - TOP
    for i in range(3):
        value = top * i / 2
        chart.y_ticks.append(
            Tick(round(chart.plot_bottom - plot_h * i / 2, 1), short_number(value, unit))
        )
    n = max(len(labels), 1)
    every = max(1, math.ceil(n / 6))
    slot = plot_w / n
    for i, label in enumerate(labels):
        if i % every == 0:
            chart.x_ticks.append(Tick(round(LEFT + slot * (i + 0.5), 1), label))
    return slot, plot_h


def stacked_bars(
    *,
    title: str,
    labels: list[str],
    series: list[tuple[str, str, list[float]]],
    unit: str = "",
    width: int = 720,
    height: int = 190,
) -> Chart:
    """Bars per slot, stacked in the order of `series` ((css class, legend name, values))."""
    chart = Chart(title, width, height, [(cls, name) for cls, name, _ in series])
    totals = [sum(values[i] for _, _, values in series) for i in range(len(labels))]
    top = nice_ceiling(max(totals, default=0))
    chart.empty = not any(totals)
    slot, plot_h = _frame(chart, labels, top, unit)
    bar_w = max(slot * 0.72, 1)
    for i, label in enumerate(labels):
        y = float(chart.plot_bottom)
        for cls, name, values in series:
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            chart.bars.append(
                Bar(
                    round(LEFT + slot * i + (slot - bar_w) / 2, 2),
                    round(y, 2),
                    round(bar_w, 2),
                    round(h, 2),
                    cls,
                    f"{label} · {name}: {short_number(value, unit)}",
                )
            )
    return chart


def line_chart(
    *,
    title: str,
    labels: list[str],
    series: list[tuple[str, str, list[float | None]]],
    unit: str = "",
    width: int = 720,
    height: int = 190,
) -> Chart:
    """One polyline per series; gaps (None) split nothing but are left out."""
    chart = Chart(title, width, height, [(cls, name) for cls, name, _ in series])
    values = [v for _, _, vs in series for v in vs if v is not None]
    top = nice_ceiling(max(values, default=0))
    chart.empty = not values
    slot, plot_h = _frame(chart, labels, top, unit)
    for cls, name, vs in series:
        points, dots = [], []
        for i, v in enumerate(vs):
            if v is None:
                continue
            x = round(LEFT + slot * (i + 0.5), 1)
            y = round(chart.plot_bottom - plot_h * v / top, 1)
            points.append(f"{x},{y}")
            dots.append((x, y, f"{labels[i]} · {name}: {short_number(v, unit)}"))
        chart.lines.append(Line(cls, " ".join(points), name, dots))
    return chart

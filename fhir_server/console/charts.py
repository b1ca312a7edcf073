"""Vital-sign charts as server-side SVG: no JavaScript library, nothing to vendor.

One small line chart per series: time on x (spaced by real time), value on y with the min and
max labelled, dates and times in the console's time zone. Values are numbers and labels are escaped, so the markup is safe to inline.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from .clock import local

WIDTH, HEIGHT = 420, 170
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 40, 10, 22, 26


def _epoch(when: str) -> float:
    text = when if len(when) > 10 else when[:10] + "T00:00:00+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def line_chart(title: str, unit: str, points: list[tuple[str, float]], tz: dt.tzinfo = dt.UTC) -> str:
    """An ``<svg>`` line chart of ``points`` ((ISO time, value), sorted by time); dates and
    times are labelled in ``tz`` (the console's time zone)."""
    xs = [_epoch(w) for w, _ in points]
    ys = [v for _, v in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    margin = (y1 - y0) * 0.1
    y0, y1 = y0 - margin, y1 + margin
    plot_w, plot_h = WIDTH - _PAD_L - _PAD_R, HEIGHT - _PAD_T - _PAD_B

    def px(x: float) -> float:
        return _PAD_L + (plot_w / 2 if x1 == x0 else (x - x0) / (x1 - x0) * plot_w)

    def py(y: float) -> float:
        return _PAD_T + (1 - (y - y0) / (y1 - y0)) * plot_h

    coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
    dots = "".join(
        f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5"><title>{escape(local(w, tz))}: {y:g} {escape(unit)}</title></circle>'
        for (w, _), x, y in zip(points, xs, ys, strict=True)
    )
    lo, hi = min(ys), max(ys)
    first, last = (escape(local(points[i][0], tz, date_only=True)) for i in (0, -1))
    label = escape(f"{title} ({unit})")
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{_PAD_L}" y="14" class="chart-title">{label}</text>'
        f'<line x1="{_PAD_L}" y1="{HEIGHT - _PAD_B}" x2="{WIDTH - _PAD_R}" y2="{HEIGHT - _PAD_B}" class="axis"/>'
        f'<line x1="{_PAD_L}" y1="{_PAD_T}" x2="{_PAD_L}" y2="{HEIGHT - _PAD_B}" class="axis"/>'
        f'<text x="{_PAD_L - 4}" y="{py(hi) + 4:.1f}" text-anchor="end" class="tick">{hi:g}</text>'
        f'<text x="{_PAD_L - 4}" y="{py(lo) + 4:.1f}" text-anchor="end" class="tick">{lo:g}</text>'
        f'<text x="{_PAD_L}" y="{HEIGHT - 8}" class="tick">{first}</text>'
        f'<text x="{WIDTH - _PAD_R}" y="{HEIGHT - 8}" text-anchor="end" class="tick">{last}</text>'
        f'<polyline points="{coords}" class="line"/>{dots}</svg>'
    )

"""Charts drawn on the server as SVG: nothing to load, nothing run in the browser."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from markupsafe import Markup, escape

# Result name → colour (and the order of the stack, bottom first).
COLOURS = {
    "stored": "#2f7d4f",
    "duplicate": "#7a8fa6",
    "unhandled": "#c9a227",
    "invalid": "#c0392b",
    "refused": "#6c3483",
}

_W, _H, _LEFT, _BOTTOM, _TOP = 720, 180, 44, 22, 8


def stacked_bars(
    title: str, buckets: Sequence[datetime], series: Mapping[str, Sequence[float]]
) -> Markup:
    """A stacked bar chart of `series` (same length as `buckets`), scaled to its highest bar."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(buckets))]
    top = max(totals, default=0) or 1
    plot_w, plot_h = _W - _LEFT - 4, _H - _BOTTOM - _TOP
    step = plot_w / max(len(buckets), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-labelledby="chart-title">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_W - 4}" y2="{_TOP + plot_h}"'
        ' stroke="#999" stroke-width="1"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + 10}" text-anchor="end" font-size="11"'
        f' fill="#555">{_short(top)}</text>',
        f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end" font-size="11"'
        ' fill="#555">0</text>',
    ]
    for i, at in enumerate(buckets):
        y: float = _TOP + plot_h
        for name, values in series.items():
            value = values[i]
            if value <= 0:
                continue
            height = value / top * plot_h
            y -= height
            parts.append(
                f'<rect x="{_LEFT + i * step + 0.5:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}"'
                f' height="{height:.1f}" fill="{COLOURS.get(name, "#888")}">'
                f"<title>{at:%Y-%m-%d %H:%M} {escape(name)}: {_short(value)}</title></rect>"
            )
    shown_day = None
    for i in sorted({0, len(buckets) // 2, len(buckets) - 1}):
        if 0 <= i < len(buckets):
            # The date where the axis starts and wherever it changes: "the last day"
            # runs over two of them.
            day = buckets[i].date()
            label = f"{buckets[i]:%H:%M}" if day == shown_day else f"{buckets[i]:%d %b %H:%M}"
            shown_day = day
            parts.append(
                f'<text x="{_LEFT + i * step + step / 2:.1f}" y="{_H - 6}" text-anchor="middle"'
                f' font-size="11" fill="#555">{label}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every value above is escaped or a number)


def _short(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"

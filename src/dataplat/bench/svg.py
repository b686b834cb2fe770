"""Hand-made inline SVG charts for the reports: grouped bars and lines over categories.

No plotting library: each function returns one ``<svg>`` element as text, with axes,
value labels, a legend and an optional logarithmic y axis.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

COLORS = ("#2b6cb0", "#dd6b20", "#2f855a", "#6b46c1", "#c53030", "#718096", "#b7791f", "#319795")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= m * exp:
            return m * exp
    return 10 * exp


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


class _Axis:
    def __init__(self, values: Sequence[float], log: bool, top: float, height: float) -> None:
        positive = [v for v in values if v > 0]
        self.log = log and bool(positive)
        self.top, self.height = top, height
        if self.log:
            self.lo = 10 ** math.floor(math.log10(min(positive)))
            self.hi = 10 ** math.ceil(math.log10(max(positive)))
            if self.hi <= self.lo:
                self.hi = self.lo * 10
        else:
            self.lo, self.hi = 0.0, _nice_max(max(values, default=1.0))

    def y(self, value: float) -> float:
        if self.log:
            v = max(value, self.lo)
            frac = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            frac = (value - self.lo) / (self.hi - self.lo)
        return self.top + self.height * (1 - frac)

    def ticks(self) -> list[float]:
        if self.log:
            out, v = [], self.lo
            while v <= self.hi * 1.0001:
                out.append(v)
                v *= 10
            return out
        return [self.hi * i / 5 for i in range(6)]


def _frame(
    title: str, width: int, height: int, axis: _Axis, left: int, plot_w: float, y_label: str
) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11" role="img">',
        f"<title>{html.escape(title)}</title>",
        f'<text x="{left}" y="14" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    for t in axis.ticks():
        y = axis.y(t)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_label(t)}</text>'
        )
    parts.append(
        f'<text x="12" y="{axis.top + axis.height / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {axis.top + axis.height / 2:.1f})">{html.escape(y_label)}</text>'
    )
    return parts


def _legend(names: Sequence[str], left: int, y: float, dashed: Mapping[str, bool] | None = None) -> list[str]:
    parts, x = [], float(left)
    for k, name in enumerate(names):
        color = COLORS[k % len(COLORS)]
        dash = ' stroke-dasharray="5,3"' if dashed and dashed.get(name) else ""
        parts.append(
            f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 16:.1f}" y2="{y:.1f}" stroke="{color}" '
            f'stroke-width="6"{dash}/><text x="{x + 20:.1f}" y="{y + 4:.1f}">{html.escape(name)}</text>'
        )
        x += 30 + 6.5 * len(name)
    return parts


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    y_label: str = "",
    log: bool = False,
    width: int = 860,
    height: int = 300,
) -> str:
    """Grouped vertical bars: one group per category, one bar (and colour) per series."""
    if not categories or not series:
        return "<p>(nothing to plot)</p>"
    values = [v for vs in series.values() for v in vs if v is not None]
    left, right, top, bottom = 64, 10, 26, 64
    plot_w, plot_h = width - left - right, height - top - bottom
    axis = _Axis(values or [1.0], log, top, plot_h)
    parts = _frame(title, width, height, axis, left, plot_w, y_label)
    group_w = plot_w / len(categories)
    bar_w = group_w * 0.8 / len(series)
    for i, cat in enumerate(categories):
        gx = left + i * group_w + group_w * 0.1
        for k, (_name, vs) in enumerate(series.items()):
            v = vs[i] if i < len(vs) else None
            x = gx + k * bar_w
            if v is None:
                parts.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - 3}" text-anchor="middle">–</text>'
                )
                continue
            y = axis.y(v)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                f'height="{max(top + plot_h - y, 0):.1f}" fill="{COLORS[k % len(COLORS)]}">'
                f"<title>{html.escape(cat)} / {html.escape(_name)}: {_label(v)}</title></rect>"
            )
            if bar_w >= 18:
                parts.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="9">'
                    f"{_label(v)}</text>"
                )
        parts.append(
            f'<text x="{left + (i + 0.5) * group_w:.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
            f"{html.escape(cat)}</text>"
        )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>'
    )
    parts += _legend(list(series), left, height - 16)
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    y_label: str = "",
    x_label: str = "",
    log: bool = False,
    dashed: Mapping[str, bool] | None = None,
    width: int = 860,
    height: int = 300,
) -> str:
    """Lines over evenly spaced categories (concurrency steps, scale factors), points labelled."""
    if not x_labels or not series:
        return "<p>(nothing to plot)</p>"
    values = [v for vs in series.values() for v in vs if v is not None]
    left, right, top, bottom = 64, 20, 26, 70
    plot_w, plot_h = width - left - right, height - top - bottom
    axis = _Axis(values or [1.0], log, top, plot_h)
    parts = _frame(title, width, height, axis, left, plot_w, y_label)
    n = len(x_labels)

    def x(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else 20 + i * (plot_w - 40) / (n - 1))

    for i, lab in enumerate(x_labels):
        parts.append(
            f'<text x="{x(i):.1f}" y="{top + plot_h + 14}" text-anchor="middle">{html.escape(lab)}</text>'
        )
    if x_label:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 30}" text-anchor="middle">'
            f"{html.escape(x_label)}</text>"
        )
    for k, (name, vs) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        dash = ' stroke-dasharray="5,3"' if dashed and dashed.get(name) else ""
        pts = [(x(i), axis.y(v), v) for i, v in enumerate(vs) if v is not None]
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for px, py, v in pts:
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}">'
                f"<title>{html.escape(name)}: {_label(v)}</title></circle>"
            )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>'
    )
    parts += _legend(list(series), left, height - 14, dashed)
    parts.append("</svg>")
    return "".join(parts)

"""Small inline SVG charts (scatter and lines) with no JavaScript and no external assets.

A report is read offline, archived and attached to reviews: inline SVG keeps it one file of a
few hundred kilobytes, prints sharply, and every mark carries a ``<title>`` the browser shows
on hover. Axes switch to a log scale when the values span more than ``LOG_SPAN``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 380, 290
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 44
LOG_SPAN = 20.0  # max / min above which an axis is logarithmic
LABEL_GAP = 12.0  # px between the baselines of two labels
FRONT = "#d62728"  # as the run page's interactive frontier
# baselines in line charts: black and greys, each with its own dash pattern
BASELINE_STYLES = (("#111111", "6 3"), ("#555555", "2 2"), ("#888888", "8 3 2 3"))
OTHER = "#9A9A9A"
BASELINE = "#111111"
# one colour per line: Okabe-Ito without black, then two darker extras
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F3C8D",
           "#3B7A57")


@dataclass(frozen=True)
class Mark:
    """One point of a scatter plot."""

    x: float
    y: float
    kind: str  # "front" | "other" | "estimated" | "baseline"
    title: str  # hover text
    label: str = ""  # drawn beside the mark (baselines)
    ref: str = ""  # genome id, for links and tests


@dataclass(frozen=True)
class LinePoint:
    x: float
    y: float
    flash_attn: bool | None  # marker: filled = on, hollow = off, square = unknown
    title: str


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    dash: str  # SVG stroke-dasharray ("" = solid)
    points: tuple[LinePoint, ...]


class Axis:
    """Maps values to pixels, linear or logarithmic, with readable ticks."""

    def __init__(self, lo: float, hi: float, start: float, end: float,
                 log: bool | None = None) -> None:
        self.log = (lo > 0 and hi / lo >= LOG_SPAN) if log is None else log
        if self.log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi <= lo:
            pad = abs(lo) * 0.1 or 1.0
            lo, hi = lo - pad, hi + pad
        pad = (hi - lo) * 0.08
        self.lo, self.hi = lo - pad, hi + pad
        self.start, self.end = start, end

    def __call__(self, v: float) -> float:
        t = math.log10(v) if self.log else v
        return self.start + (t - self.lo) / (self.hi - self.lo) * (self.end - self.start)

    def ticks(self) -> list[float]:
        if self.log:
            out = []
            for e in range(math.floor(self.lo), math.ceil(self.hi) + 1):
                for m in (1, 2, 5):
                    v = m * 10.0**e
                    if self.lo <= math.log10(v) <= self.hi:
                        out.append(v)
            return out
        step = _nice((self.hi - self.lo) / 5)
        first = math.ceil(self.lo / step) * step
        return [first + i * step for i in range(int((self.hi - first) / step) + 1)]


def _nice(raw: float) -> float:
    exp = math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**exp >= raw:
            return m * 10**exp
    return 10 ** (exp + 1)


def tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{v:.4g}"


def _frame(x: Axis, y: Axis, x_label: str, y_label: str,
           x_ticks: Sequence[tuple[float, str]] | None = None) -> list[str]:
    out = [f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
           f'height="{HEIGHT - TOP - BOTTOM}"/>']
    for v in y.ticks():
        py = y(v)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" '
                   f'y2="{py:.1f}"/><text class="tick" x="{LEFT - 5}" y="{py + 3.5:.1f}" '
                   f'text-anchor="end">{tick_label(v)}</text>')
    for v, text in (x_ticks or [(v, tick_label(v)) for v in x.ticks()]):
        px = x(v)
        out.append(f'<line class="grid" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" '
                   f'y2="{HEIGHT - BOTTOM}"/><text class="tick" x="{px:.1f}" '
                   f'y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{escape(text)}</text>')
    out.append(f'<text class="axis" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 8}" '
               f'text-anchor="middle">{escape(x_label)}{" (log)" if x.log else ""}</text>')
    out.append(f'<text class="axis" transform="translate(14,{(TOP + HEIGHT - BOTTOM) / 2}) '
               f'rotate(-90)" text-anchor="middle">{escape(y_label)}'
               f'{" (log)" if y.log else ""}</text>')
    return out


def _label_rows(marks: Sequence[tuple[Mark, float, float]]) -> dict[int, float]:
    """A y for each labelled mark's label (by index), pushed apart so labels of nearby
    baselines never overlap: top to bottom, each at least ``LABEL_GAP`` below the last."""
    out: dict[int, float] = {}
    last = -math.inf
    for i, (_, _, py) in sorted(enumerate(marks), key=lambda t: t[1][2]):
        y = max(py - 7, last + LABEL_GAP)
        out[i] = y
        last = y
    return out


def _mark(m: Mark, px: float, py: float, label_y: float | None = None) -> str:
    title = f"<title>{escape(m.title)}</title>"
    ref = f' data-genome="{escape(m.ref)}"' if m.ref else ""
    if m.kind == "baseline":
        s = 7.0
        # labels go left of marks in the right third, so they stay inside the plot
        right = px > LEFT + (WIDTH - LEFT - RIGHT) * 0.66
        anchor = "end" if right else "start"
        lx = px - 9 if right else px + 9
        ly = py - 7 if label_y is None else label_y
        label = (f'<text class="blabel" x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}">'
                 f"{escape(m.label)}</text>") if m.label else ""
        return (f'<g class="pt baseline"{ref}><path d="M{px:.1f},{py - s:.1f} L{px + s:.1f},'
                f'{py:.1f} L{px:.1f},{py + s:.1f} L{px - s:.1f},{py:.1f} Z" fill="{BASELINE}">'
                f"{title}</path>{label}</g>")
    if m.kind == "front":
        return (f'<circle class="pt front"{ref} cx="{px:.1f}" cy="{py:.1f}" r="5.5" '
                f'fill="{FRONT}" stroke="#fff">{title}</circle>')
    if m.kind == "estimated":
        return (f'<circle class="pt est"{ref} cx="{px:.1f}" cy="{py:.1f}" r="4" fill="none" '
                f'stroke="{OTHER}" stroke-dasharray="2 1.5">{title}</circle>')
    return (f'<circle class="pt other"{ref} cx="{px:.1f}" cy="{py:.1f}" r="3.5" '
            f'fill="{OTHER}">{title}</circle>')


def _open(cls: str, label: str) -> str:
    return (f'<svg class="{cls}" viewBox="0 0 {WIDTH} '
            f'{HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{escape(label)}">')


def scatter(marks: Sequence[Mark], *, x_label: str, y_label: str) -> str:
    """Marks drawn back to front: estimated, other, frontier, baselines (labelled)."""
    finite = [m for m in marks if math.isfinite(m.x) and math.isfinite(m.y)]
    if not finite:
        return '<p class="empty">no plottable values</p>'
    x = Axis(min(m.x for m in finite), max(m.x for m in finite), LEFT, WIDTH - RIGHT,
             log=None if all(m.x > 0 for m in finite) else False)
    y = Axis(min(m.y for m in finite), max(m.y for m in finite), HEIGHT - BOTTOM, TOP,
             log=None if all(m.y > 0 for m in finite) else False)
    out = [_open("plot scatter", f"{y_label} against {x_label}"), *_frame(x, y, x_label, y_label)]
    order = {"estimated": 0, "other": 1, "front": 2, "baseline": 3}
    labelled = [(m, x(m.x), y(m.y)) for m in finite if m.label]
    rows = _label_rows(labelled)
    label_y = {id(m): rows[i] for i, (m, _, _) in enumerate(labelled)}
    for m in sorted(finite, key=lambda m: order.get(m.kind, 1)):
        out.append(_mark(m, x(m.x), y(m.y), label_y.get(id(m))))
    out.append("</svg>")
    return "".join(out)


def lines(series: Sequence[Series], *, x_ticks: Sequence[tuple[float, str]], x_label: str,
          y_label: str) -> str:
    """One line per series over a log2 x axis (contexts), markers by flash-attention setting."""
    pts = [p for s in series for p in s.points if math.isfinite(p.y)]
    if not pts:
        return '<p class="empty">no measured values</p>'
    xs = [v for v, _ in x_ticks] or [p.x for p in pts]
    x = Axis(min(xs), max(xs), LEFT, WIDTH - RIGHT, log=min(xs) > 0)
    y = Axis(min(p.y for p in pts), max(p.y for p in pts), HEIGHT - BOTTOM, TOP,
             log=None if all(p.y > 0 for p in pts) else False)
    out = [_open("plot lines", f"{y_label} against {x_label}"),
           *_frame(x, y, x_label, y_label, x_ticks)]
    for s in series:
        ok = [p for p in s.points if math.isfinite(p.y)]
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        if len(ok) > 1:
            path = " ".join(f"{'M' if i == 0 else 'L'}{x(p.x):.1f},{y(p.y):.1f}"
                            for i, p in enumerate(ok))
            out.append(f'<path class="line" d="{path}" stroke="{s.colour}"{dash} fill="none">'
                       f"<title>{escape(s.name)}</title></path>")
        for p in ok:
            px, py = x(p.x), y(p.y)
            title = f"<title>{escape(p.title)}</title>"
            if p.flash_attn is None:
                out.append(f'<rect class="lp" x="{px - 3.5:.1f}" y="{py - 3.5:.1f}" width="7" '
                           f'height="7" fill="{s.colour}">{title}</rect>')
            else:
                fill = s.colour if p.flash_attn else "#fff"
                out.append(f'<circle class="lp fa{int(p.flash_attn)}" cx="{px:.1f}" '
                           f'cy="{py:.1f}" r="4" fill="{fill}" stroke="{s.colour}" '
                           f'stroke-width="1.6">{title}</circle>')
    out.append("</svg>")
    return "".join(out)

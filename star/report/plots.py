"""The report's charts: the frontier per objective pair, and figures against context per
llama.cpp family. Data comes from a ``Report``; drawing from ``star.report.svg``."""

from __future__ import annotations

import itertools
import math
from html import escape

from star.report import fmt
from star.report.model import MEASURED_METRICS, CandidateView, Report
from star.report.svg import (
    BASELINE_STYLES,
    FRONT,
    OTHER,
    PALETTE,
    LinePoint,
    Mark,
    Series,
    lines,
    scatter,
)
from star.search.objectives import MetricKey, describe, parse_metric, short_context


def _kind(c: CandidateView, x: str, y: str) -> str:
    if c.is_baseline:
        return "baseline"
    if c.on_front:
        return "front"
    if x in c.estimated or y in c.estimated:
        return "estimated"
    return "other"


def _title(c: CandidateView, x: str, y: str) -> str:
    est = lambda k: " (estimated)" if k in c.estimated else ""  # noqa: E731
    return (f"{c.name}\n{describe(x)}: {fmt.figure(c.objectives[x])}{est(x)}\n"
            f"{describe(y)}: {fmt.figure(c.objectives[y])}{est(y)}")


def frontier_plots(report: Report) -> str:
    """One scatter per pair of objectives: every feasible candidate, the frontier (over all
    objectives) highlighted, staged estimates hollow, baselines as labelled diamonds."""
    names = list(report.objectives)
    pairs = list(itertools.combinations(names, 2)) or [(names[0], names[0])]
    shown = [c for c in report.candidates.values() if c.feasible or c.is_baseline]
    figures = []
    for x, y in pairs:
        marks, missing = [], 0
        for c in shown:
            vx, vy = c.objectives[x].value, c.objectives[y].value
            if vx is None or vy is None or math.isinf(vx) or math.isinf(vy):
                missing += 1
                continue
            marks.append(Mark(vx, vy, _kind(c, x, y), _title(c, x, y),
                              c.label or "" if c.is_baseline else "", c.genome_id))
        note = f"; {missing} without both values not shown" if missing else ""
        figures.append(
            f'<figure data-x="{escape(x)}" data-y="{escape(y)}">'
            f"{scatter(marks, x_label=describe(x), y_label=describe(y))}"
            f"<figcaption>{escape(describe(y))} against {escape(describe(x))}{note}"
            "</figcaption></figure>")
    legend = (
        '<div class="legend">'
        f'<span><i class="sw" style="background:{FRONT}"></i>frontier over all objectives</span>'
        f'<span><i class="sw" style="background:{OTHER}"></i>feasible, dominated</span>'
        f'<span><i class="sw" style="background:#fff;border:1px dashed {OTHER}"></i>staged '
        "estimate (not confirmed; never on the frontier)</span>"
        '<span><i class="sw" style="background:#111;transform:rotate(45deg) scale(.8)"></i>'
        "baseline</span></div>")
    return legend + f'<div class="plots">{"".join(figures)}</div>'


def _families(report: Report) -> dict[str, list[CandidateView]]:
    out: dict[str, list[CandidateView]] = {}
    for gid in report.front:
        c = report.candidates[gid]
        out.setdefault(c.arch or "?", []).append(c)
    return out


def _style(i: int, members: int) -> tuple[str, str]:
    """(colour, dash) of the i-th line: frontier members solid in palette colours, then the
    baselines dashed in black and greys."""
    if i < members:
        return PALETTE[i % len(PALETTE)], ""
    return BASELINE_STYLES[(i - members) % len(BASELINE_STYLES)]


def context_plots(report: Report) -> str:
    """Per family (llama.cpp arch) and device class: TTFT, decode and peak RSS against
    context for its frontier candidates, with the baselines dashed for reference. Filled
    markers: the figure came with flash attention on; hollow: off."""
    baselines = [report.candidates[g] for g in report.baselines]
    ticks = [(float(c), short_context(c)) for c in report.contexts]
    out = []
    for family, members in sorted(_families(report).items()):
        out.append(f'<h3 data-family="{escape(family)}">{escape(family)} '
                   f'<span class="muted">({len(members)} on the frontier)</span></h3>')
        for cls in report.device_classes:
            charts = []
            for metric in MEASURED_METRICS:
                series = []
                for i, c in enumerate([*members, *baselines]):
                    pts = []
                    for ctx in report.contexts:
                        key = MetricKey(metric, ctx, cls).name
                        f = c.figures[key]
                        if f.value is None:
                            continue
                        pts.append(LinePoint(float(ctx), f.value, f.flash_attn,
                                             f"{c.name}\n{describe(key)}: {fmt.figure(f)}, "
                                             f"{fmt.setting(f.flash_attn)}"))
                    colour, dash = _style(i, len(members))
                    series.append(Series(c.name, colour, dash, tuple(pts)))
                label = describe(parse_metric(f"{metric}@1/{cls}"), with_device=False)
                label = label.replace(" @1", "")
                chart = lines(series, x_ticks=ticks, x_label="context (tokens)", y_label=label)
                charts.append(
                    f"<figure>{chart}"
                    f"<figcaption>{escape(label)} on {escape(cls)}</figcaption></figure>")
            key_items = "".join(
                f'<span><i class="sw" style="background:{_style(i, len(members))[0]}"></i>'
                f"{escape(c.name)}{' (baseline, dashed)' if c.is_baseline else ''}</span>"
                for i, c in enumerate([*members, *baselines]))
            key_items += ("<span>● flash attention on · ○ off (the setting that gave the "
                          "figure)</span>")
            out.append(f'<div class="legend">{key_items}</div><div class="plots">'
                       f'{"".join(charts)}</div>')
    return "".join(out) or '<p class="muted">no frontier yet</p>'

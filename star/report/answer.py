"""The report's answer: for each device class and context, which frontier candidates beat each
baseline and by how much (candidate / baseline ratios of TTFT, decode and peak RSS), at what
proxy loss, and which baselines each dominates over the run's objectives."""

from __future__ import annotations

import math
from html import escape

from star.report import fmt
from star.report.atoms import name_html, strip_html
from star.report.model import MEASURED_METRICS, Cell, Comparison, Figure, Report
from star.search.objectives import MetricKey, describe, short_context

SHORT = {"ttft_ms": "TTFT", "decode_ms": "decode", "peak_rss_mb": "peak RSS"}


def _range(values: list[float]) -> str:
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    return fmt.ratio(lo) if abs(hi - lo) < 0.005 else f"{lo:.2f}–{hi:.2f}×"


def _headline(r: Report) -> str:
    """One sentence per (device class, baseline, context): who beats it, by how much."""
    items = []
    for cls in r.device_classes:
        for b in r.baselines:
            base = r.candidates[b]
            comps = [c for c in r.comparisons if c.baseline == b]
            for ctx in r.contexts:
                winners = [c for c in comps if c.beats_at(ctx, cls)]
                where = f"On <b>{escape(cls)}</b> at <b>{short_context(ctx)}</b> tokens"
                if not winners:
                    items.append(f"<li>{where}, no frontier candidate beats "
                                 f"<b>{escape(base.label or base.name)}</b> on TTFT, decode and "
                                 "peak RSS together.</li>")
                    continue
                spans = []
                for metric in MEASURED_METRICS:
                    key = MetricKey(metric, ctx, cls).name
                    ratios = [x for w in winners if (x := w.cells[key].ratio) is not None]
                    spans.append(f"{SHORT[metric]} {_range(ratios)}")
                if all(w.quality.outcome == "n/a" for w in winners):
                    quality = "proxy loss not measured for both"
                else:
                    same = sum(w.quality.outcome in ("better", "tie") for w in winners)
                    quality = f"{same} of them at a proxy loss no worse beyond noise"
                items.append(
                    f"<li>{where}, <b>{len(winners)} of {len(comps)}</b> frontier candidates "
                    f"beat <b>{escape(base.label or base.name)}</b> ({'; '.join(spans)} of the "
                    f"baseline's); {quality}.</li>")
    if not items:
        return '<p class="muted">no baseline or no measured device class to compare with</p>'
    return (f'<ul class="headline">{"".join(items)}</ul><p class="note">Beats: no figure '
            "(TTFT, decode, peak RSS at that context) worse beyond both figures' spread, at least "
            "one better beyond it. Ratios are candidate ÷ baseline.</p>")


def _verdicts(r: Report) -> str:
    if not r.baselines or not r.front:
        return ""
    head = "".join(f"<th>vs {escape(r.candidates[b].label or b[:8])}</th>" for b in r.baselines)
    rows = []
    for f in r.front:
        c = r.candidates[f]
        cells = []
        for b in r.baselines:
            comp = r.comparison(f, b)
            assert comp is not None
            groups: dict[str, list[str]] = {}
            for key, cell in comp.objectives.items():
                groups.setdefault(cell.outcome, []).append(describe(key))
            detail = "; ".join(f"{o} on {', '.join(ks)}" for o, ks in groups.items())
            cells.append(f'<td data-verdict="{comp.verdict}"><span class="badge '
                         f'{comp.verdict}">{comp.verdict}</span> <span class="muted">'
                         f"{escape(detail)}</span></td>")
        rows.append(f"<tr><td>{strip_html(c.blocks)} {name_html(c)}</td>{''.join(cells)}</tr>")
    return ("<h3>Which baselines each frontier candidate dominates (over the run's objectives, "
            "beyond measured spread)</h3>"
            f"<table class=\"verdicts\"><tr><th>frontier candidate</th>{head}</tr>"
            f"{''.join(rows)}</table>")


def _side(who: str, f: Figure) -> str:
    where = f", {fmt.setting(f.flash_attn)}" if f.flash_attn is not None else ""
    mid = f", measurement #{f.measurement_id}" if f.measurement_id else ""
    flags = ", noisy" if f.noisy else ""
    return f"{who} {fmt.figure(f)}{where}{mid}{flags}"


def _cell_title(cell: Cell, base: str) -> str:
    """Hover text: both figures with the setting and measurement that gave them."""
    return (f"{describe(cell.key)}: {_side('candidate', cell.candidate)} vs "
            f"{_side(base, cell.baseline)} → {cell.outcome}")


def _ratio_td(comp: Comparison, cell: Cell, base: str) -> str:
    r = cell.ratio
    a, b = cell.candidate.value, cell.baseline.value
    text = ("OOM" if a is not None and math.isinf(a) else
            "baseline OOM" if b is not None and math.isinf(b) else fmt.ratio(r))
    link = (f'<a href="#m{cell.candidate.measurement_id}">{text}</a>'
            if cell.candidate.measurement_id else text)
    return (f'<td class="num ratio {cell.outcome}" data-candidate="{comp.candidate}" '
            f'data-baseline="{comp.baseline}" data-key="{escape(cell.key)}" '
            f'data-ratio="{"" if r is None else f"{r:.6g}"}" data-outcome="{cell.outcome}" '
            f'title="{escape(_cell_title(cell, base))}">{link}</td>')


def _key(metric: str, context: int, device_class: str) -> str:
    return MetricKey(metric, context, device_class).name


def _beats(comp: Comparison, contexts: tuple[int, ...], device_class: str) -> str:
    won = [short_context(c) for c in contexts if comp.beats_at(c, device_class)]
    return ", ".join(won) or "–"


def _ratio_tables(r: Report) -> str:
    out = []
    for cls in r.device_classes:
        for b in r.baselines:
            base = r.candidates[b]
            name = base.label or base.name
            comps = [c for c in r.comparisons if c.baseline == b]
            if not comps:
                continue
            top = "".join(f'<th colspan="3" class="num">@{short_context(ctx)}</th>'
                          for ctx in r.contexts)
            sub = "".join(f'<th class="num">{SHORT[m]}</th>' for _ in r.contexts
                          for m in MEASURED_METRICS)
            base_row = "".join(
                f'<td class="num">{fmt.figure(base.figures[_key(m, ctx, cls)], m, unit=True)}'
                "</td>" for ctx in r.contexts for m in MEASURED_METRICS)
            rows = [f"<tr><td>{name_html(base)}</td><td class=\"num\">"
                    f"{fmt.figure(base.quality)}</td>{base_row}<td></td></tr>"]
            for comp in comps:
                c = r.candidates[comp.candidate]
                q = comp.quality
                tds = "".join(_ratio_td(comp, comp.cells[_key(m, ctx, cls)], name)
                              for ctx in r.contexts for m in MEASURED_METRICS)
                rows.append(
                    f"<tr><td>{strip_html(c.blocks)} {name_html(c)}</td>"
                    f'<td class="num {q.outcome}" data-outcome="{q.outcome}" '
                    f'title="{escape(q.candidate.note)}">{fmt.figure(q.candidate)}</td>{tds}'
                    f'<td class="beats">{_beats(comp, r.contexts, cls)}</td></tr>')
            out.append(
                f'<h3>On {escape(cls)}: frontier vs {escape(name)} (candidate ÷ baseline; below '
                "1 is better)</h3>"
                f'<div class="scroll"><table class="ratios" data-class="{escape(cls)}" '
                f'data-baseline="{b}">'
                f'<tr><th rowspan="2">candidate</th><th rowspan="2" class="num">'
                f"{escape(describe('quality'))}</th>{top}<th rowspan=\"2\">beats it at</th></tr>"
                f"<tr>{sub}</tr>"
                f"{''.join(rows)}</table></div>")
    if out:
        out.append('<p class="note">First row: the baseline\'s own figures. Green: better '
                   "beyond both figures' spread; red: worse; grey ≈: within spread (a tie). "
                   "Each figure is the better flash-attention setting and, within a device "
                   "class, the worst device; hover for both figures, their setting and "
                   "measurement, click for its provenance. Proxy loss ± its standard error "
                   "(sampling error of the held-out accuracies).</p>")
    return "".join(out)


def answer_section(r: Report) -> str:
    """Who beats each baseline, by how much, at what quality; which baselines each dominates."""
    return _headline(r) + _verdicts(r) + _ratio_tables(r)

"""The report as HTML: one self-contained document (inline CSS and SVG, no script, nothing
loaded over a network), or just its body for the run page.

Order follows the reader's questions: what beats the baselines and by how much, where the
frontier lies, what the winning architectures look like, how they scale with context, which
differences are noise, what the staging cost and saved, and where every figure came from.
"""

from __future__ import annotations

import math
from html import escape

from star.report import fmt
from star.report.devicetime import describe_error
from star.report.model import MEASURED_METRICS, CandidateView, Cell, Comparison, Report
from star.report.plots import context_plots, frontier_plots
from star.report.strip import Block, legend
from star.report.style import CSS
from star.search.objectives import MetricKey, describe, short_context

SHORT = {"ttft_ms": "TTFT", "decode_ms": "decode", "peak_rss_mb": "peak RSS"}


def strip_html(blocks: tuple[Block, ...] | list[Block]) -> str:
    """The layer strip: one block per layer, token mixer letter and fill, channel band."""
    if not blocks:
        return '<span class="muted">layer pattern not stored</span>'
    pattern = "".join(b.letter for b in blocks)
    inner = "".join(
        f'<i class="blk" style="background:{b.fill};border-bottom-color:{b.band}" '
        f'title="{escape(b.title)}">{b.letter}</i>' for b in blocks)
    return f'<span class="strip" data-pattern="{pattern}">{inner}</span>'


def _name(c: CandidateView) -> str:
    badge = ('<span class="badge baseline">baseline</span> ' if c.is_baseline else
             '<span class="badge front">frontier</span> ' if c.on_front else "")
    return f'{badge}<a href="#c-{c.short_id}">{escape(c.name)}</a>'


def _header(r: Report) -> str:
    n = sum(not c.is_baseline for c in r.candidates.values())
    objectives = ", ".join(escape(describe(k)) for k in r.objectives)
    budgets = "; ".join(f"{escape(describe(k))} ≤ {fmt.num(v)}" for k, v in r.budgets)
    staging = (f"staged: screened at {_ctxs(r.screen_contexts)}, confirmed at "
               f"{_ctxs(r.confirm_contexts)}" if r.confirm_contexts else "not staged")
    settings = " and ".join(fmt.setting(s) for s in r.flash_attn)
    out = [f"<header><h1>Run {escape(r.run)}</h1>",
           f'<p class="sub">{escape(r.status or "?")} · {n} candidates in {r.generations} '
           f"generations · {len(r.baselines)} baseline{'s' if len(r.baselines) != 1 else ''}"
           f" · {len(r.front)} on the frontier · {escape(r.quant)} weights · contexts "
           f"{_ctxs(r.contexts)} ({staging}) · device classes "
           f"{escape(', '.join(r.device_classes) or 'none')} · measured with {settings}, "
           f"each objective at the better setting · {_plural(r.repetitions, 'repetition')}, "
           f"{r.n_gen} generated tokens per decode figure</p>",
           f"<p><b>Objectives</b> (all minimised): {objectives}"
           + (f". <b>Budgets</b>: {budgets}" if budgets else "") + "</p>"]
    out += [f'<p class="warn">{escape(n)}</p>' for n in r.notes]
    return "".join(out) + "</header>"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _ctxs(contexts: tuple[int, ...]) -> str:
    return ", ".join(short_context(c) for c in contexts) or "–"


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
        rows.append(f"<tr><td>{strip_html(c.blocks)} {_name(c)}</td>{''.join(cells)}</tr>")
    return ("<h3>Which baselines each frontier candidate dominates (over the run's objectives, "
            "beyond measured spread)</h3>"
            f"<table class=\"verdicts\"><tr><th>frontier candidate</th>{head}</tr>"
            f"{''.join(rows)}</table>")


def _cell_title(cell: Cell, base: str) -> str:
    def side(who: str, f: object) -> str:
        from star.report.model import Figure

        assert isinstance(f, Figure)
        where = f", {fmt.setting(f.flash_attn)}" if f.flash_attn is not None else ""
        mid = f", measurement #{f.measurement_id}" if f.measurement_id else ""
        flags = ", noisy" if f.noisy else ""
        return f"{who} {fmt.figure(f)}{where}{mid}{flags}"
    return (f"{describe(cell.key)}: {side('candidate', cell.candidate)} vs "
            f"{side(base, cell.baseline)} → {cell.outcome}")


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
            rows = [f"<tr><td>{_name(base)}</td><td class=\"num\">"
                    f"{fmt.figure(base.quality)}</td>{base_row}<td></td></tr>"]
            for comp in comps:
                c = r.candidates[comp.candidate]
                q = comp.quality
                tds = "".join(_ratio_td(comp, comp.cells[_key(m, ctx, cls)], name)
                              for ctx in r.contexts for m in MEASURED_METRICS)
                rows.append(
                    f"<tr><td>{strip_html(c.blocks)} {_name(c)}</td>"
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


def _card(c: CandidateView) -> str:
    cls = "baseline" if c.is_baseline else "front" if c.on_front else ""
    cache = "; ".join(f"{fmt.size(v)} @{short_context(k)}" for k, v in c.cache_bytes.items())
    where = "baseline" if c.is_baseline else f"generation {c.generation}"
    items = [("family", f"{escape(c.arch or '?')} (llama.cpp arch)"),
             ("params", f"{fmt.count(c.params)} ({fmt.count(c.non_embedding_params)} "
                        "non-embedding)"),
             ("weights", fmt.size(c.weight_bytes)),
             ("KV cache", f"{fmt.size(c.kv_bytes_per_token)}/token"),
             ("recurrent state", fmt.size(c.state_bytes)),
             ("KV + state", cache or "–"),
             ("proxy loss ↓", f"{fmt.figure(c.quality)}"),
             ("origin", f"{where} · genome {c.genome_id[:16]}")]
    if not c.feasible and c.reason:
        items.append(("infeasible", escape(c.reason)))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return (f'<div class="card {cls}" id="c-{c.short_id}" data-genome="{c.genome_id}" '
            f'data-candidate="{c.candidate_id}" data-name="{escape(c.name)}" '
            f'data-estimated="{int(bool(c.estimated))}">'
            f"<h4>{_name(c)}</h4>{strip_html(c.blocks)}<dl>{dl}</dl></div>")


def _architectures(r: Report) -> str:
    key = "".join(f'<span><i class="sw" style="background:{colour}"></i>{letter} {escape(n)}'
                  "</span>" for letter, colour, n in legend())
    shown = [*r.front, *r.baselines]
    others = [c for g, c in r.candidates.items() if g not in shown and c.feasible]
    bad = [c for g, c in r.candidates.items() if g not in shown and not c.feasible]
    out = [f'<div class="legend">{key}</div><p class="note">Block: token mixer (letter and '
           "colour); band under it: channel mixer. KV cache at f16; bytes at each context "
           "count the KV cache holding that many tokens plus the recurrent state.</p>",
           f'<div class="cands">{"".join(_card(r.candidates[g]) for g in shown)}</div>']
    if others:
        out.append(f"<details><summary>{len(others)} other feasible candidates</summary>"
                   f'<div class="cands">{"".join(_card(c) for c in others)}</div></details>')
    if bad:
        rows = "".join(f"<tr><td>{strip_html(c.blocks)} {_name(c)}</td><td>{escape(c.reason)}"
                       "</td></tr>" for c in bad)
        out.append(f"<details><summary>{len(bad)} infeasible candidates and why</summary>"
                   f"<table><tr><th>candidate</th><th>reason</th></tr>{rows}</table>"
                   f'<div class="cands">{"".join(_card(c) for c in bad)}</div></details>')
    return "".join(out)


def _ties(r: Report) -> str:
    out = []
    for t in r.ties:
        a, b = r.candidates[t.a], r.candidates[t.b]
        out.append(f'<li class="tie" data-a="{t.a}" data-b="{t.b}">{_name(a)} and {_name(b)}: '
                   "every objective within each other's spread: the same frontier point as "
                   "far as these measurements can tell</li>")
    for comp in r.comparisons:
        tied = [k for k, cell in comp.cells.items() if cell.outcome == "tie"]
        if comp.quality.outcome == "tie":
            tied.insert(0, "quality")
        if tied:
            a, b = r.candidates[comp.candidate], r.candidates[comp.baseline]
            out.append(f'<li class="tie-baseline" data-a="{comp.candidate}" '
                       f'data-b="{comp.baseline}">{_name(a)} vs {_name(b)}: tie on '
                       f"{escape(', '.join(describe(k) for k in tied))}</li>")
    rule = ('<p class="note">Two figures tie when |a − b| ≤ spread(a) + spread(b): stddev over '
            "repetitions for timings, the standard error for proxy loss. Peak RSS is one "
            "reading of one process and analytic counts are exact: those tie only when equal. "
            "Runs that differ only in tied figures describe the same frontier.</p>")
    if not out:
        return rule + '<p class="muted">no ties: every difference shown is beyond spread</p>'
    return rule + f'<ul class="ties">{"".join(out)}</ul>'


def _calibrated(r: Report, metric: str, device_class: str | None) -> str:
    """``TTFT ms @32K (x86)``: the metric at the confirm contexts it was calibrated on."""
    contexts = " / ".join(f"@{short_context(c)}" for c in r.confirm_contexts)
    name = describe(MetricKey(metric, r.confirm_contexts[0], device_class))
    return name.replace(f"@{short_context(r.confirm_contexts[0])}", contexts)


def _device_time(r: Report) -> str:
    t = r.device_time
    out = [f'<p data-spent="{t.spent_s:.6g}">Device time spent on {t.measurements} '
           f"measurements: <b>{fmt.duration(t.spent_s)}</b>"
           + (f" ({t.unpriced} OOM or failed measurements not counted)" if t.unpriced else "")
           + ".</p>"]
    if t.saved_s is not None:
        total = t.spent_s + t.saved_s
        share = t.saved_s / total if total else 0.0
        out.append(
            f'<p class="staging" data-screened="{t.screened}" data-confirmed="{t.confirmed}" '
            f'data-saved="{t.saved_s:.6g}">Screened <b>{t.screened}</b> candidates at '
            f"{_ctxs(r.screen_contexts)}; confirmed <b>{t.confirmed}</b> of them and "
            f"{t.baselines_confirmed} baseline(s) at {_ctxs(r.confirm_contexts)}. Staging "
            f"saved about <b>{fmt.duration(t.saved_s)}</b> of device time ({t.saved_jobs} "
            f"confirm jobs not run; {share:.0%} of what measuring everyone at every context "
            "would have cost).</p>")
        if t.calibration:
            rows = "".join(
                f"<tr><td>{escape(_calibrated(r, c.metric, c.device_class))}</td>"
                f'<td class="num">×{c.factor:.3f}</td><td class="num">{c.count}</td>'
                f'<td class="num">{describe_error(c.error)}</td><td class="num">'
                f"{describe_error(c.loo_error) if c.loo_error is not None else '–'}</td></tr>"
                for c in t.calibration)
            out.append("<h3>Calibration of the long-context estimates</h3><table class=\"calib\">"
                       "<tr><th>figure</th><th>factor (measured ÷ cost-model estimate)</th>"
                       "<th>confirmed candidates</th><th>median error, in-sample</th>"
                       f"<th>median error, leave-one-out</th></tr>{rows}</table>"
                       '<p class="note">Unconfirmed candidates are ranked on calibrated '
                       "estimates but never enter the frontier; the leave-one-out error is what "
                       "to expect for a candidate the calibration has not seen.</p>")
    out.append(f'<p class="note">{escape(t.method)}</p>')
    return "".join(out)


def _provenance(r: Report) -> str:
    builds = "".join(f"<li>{escape(x)}</li>" for x in r.runtimes) or "<li>none yet</li>"
    rows = []
    for p in r.provenance:
        c = r.candidates.get(p.genome_id)
        flags = [x for x, on in (("noisy", p.noisy), ("hot", p.hot), ("OOM", p.oom)) if on]
        if p.error:
            flags.append(f"error: {p.error}")
        rows.append(
            f'<tr id="m{p.measurement_id}"><td class="num">{p.measurement_id}</td>'
            f"<td>{escape(c.name if c else p.genome_id[:8])}</td><td>{escape(p.stage or '')}</td>"
            f"<td>{escape(p.device)} ({escape(p.device_class)})</td>"
            f'<td class="num">{short_context(p.context)}</td><td>{fmt.setting(p.flash_attn)}</td>'
            f"<td>{escape(p.commit)} {escape(' '.join(p.build_flags))}</td>"
            f'<td class="num">{p.threads}</td><td class="num">{p.repetitions} × {p.n_gen}</td>'
            f'<td class="num">{p.tries}</td>'
            f'<td class="num">{fmt.num(p.ttft_ms)} ± {fmt.num(p.ttft_sd, 2)}</td>'
            f'<td class="num">{fmt.num(p.decode_ms)} ± {fmt.num(p.decode_sd, 2)}</td>'
            f'<td class="num">{fmt.num(p.peak_rss_mb)}</td><td>{escape(", ".join(flags))}</td>'
            f'<td class="prov">{escape(p.conditions)}</td><td class="prov">'
            f"{escape(p.temperatures)}</td></tr>")
    estimated = []
    for c in r.candidates.values():
        for k in c.estimated:
            f = c.objectives[k]
            estimated.append(f"<li>{escape(c.name)}: {escape(describe(k))} = {fmt.figure(f)} "
                             f"<span class=\"muted\">({escape(f.note)})</span></li>")
    est = (f"<details><summary>{len(estimated)} staged estimates (not measurements; shown hollow "
           f"in the plots)</summary><ul>{''.join(estimated)}</ul></details>" if estimated else "")
    return (f"<p>Builds and settings behind the figures:</p><ul>{builds}</ul>{est}"
            f"<details><summary>{len(rows)} measurements (every figure above links here)"
            "</summary><div class=\"scroll\"><table class=\"prov\"><tr><th>#</th>"
            "<th>candidate</th><th>stage</th>"
            "<th>device</th><th>context</th><th>flash attn</th><th>llama.cpp</th><th>threads</th>"
            "<th>reps × gen</th><th>tries</th><th>TTFT ms</th><th>decode ms/token</th>"
            "<th>peak RSS MiB</th><th>flags</th><th>conditions</th><th>temperature</th></tr>"
            f"{''.join(rows)}</table></div></details>")


# Following a link to a measurement opens the collapsed table it sits in (no other script).
_OPEN_TARGET = (
    "<script>(function(){function show(){var id=location.hash.slice(1);"
    "var t=id&&document.getElementById(id);for(var e=t;e;e=e.parentElement)"
    "{if(e.tagName==='DETAILS'){e.open=true;}}if(t){t.scrollIntoView();}}"
    "window.addEventListener('hashchange',show);show();})();</script>")


def render_body(report: Report) -> str:
    """The report's sections inside ``<div class="star-report">`` (needs ``CSS``)."""
    sections = [
        ("answer", "Against the baselines", _headline(report) + _verdicts(report)
         + _ratio_tables(report)),
        ("frontier", "The frontier, per pair of objectives", frontier_plots(report)),
        ("architectures", "Architectures", _architectures(report)),
        ("context", "Latency and memory against context, per family", context_plots(report)),
        ("ties", "Ties", _ties(report)),
        ("staging", "Staging and device time", _device_time(report)),
        ("provenance", "Provenance", _provenance(report)),
    ]
    body = "".join(f'<section id="{sid}"><h2>{escape(title)}</h2>{html}</section>'
                   for sid, title, html in sections)
    return f'<div class="star-report">{_header(report)}{body}{_OPEN_TARGET}</div>'


def render_document(report: Report) -> str:
    """A complete, self-contained HTML file."""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>STAR lab report: {escape(report.run)}</title><style>{CSS}"
            "body{margin:16px;}</style></head><body>"
            f"{render_body(report)}</body></html>\n")

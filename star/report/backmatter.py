"""The report's back matter: ties, staging and device time, and the provenance of every figure."""

from __future__ import annotations

from html import escape

from star.report import fmt
from star.report.atoms import context_list, name_html
from star.report.devicetime import describe_error
from star.report.model import Report
from star.search.objectives import MetricKey, describe, short_context


def ties_section(r: Report) -> str:
    out = []
    for t in r.ties:
        a, b = r.candidates[t.a], r.candidates[t.b]
        out.append(f'<li class="tie" data-a="{t.a}" data-b="{t.b}">{name_html(a)} and '
                   f"{name_html(b)}: "
                   "every objective within each other's spread: the same frontier point as "
                   "far as these measurements can tell</li>")
    for comp in r.comparisons:
        tied = [k for k, cell in comp.cells.items() if cell.outcome == "tie"]
        if comp.quality.outcome == "tie":
            tied.insert(0, "quality")
        if tied:
            a, b = r.candidates[comp.candidate], r.candidates[comp.baseline]
            out.append(f'<li class="tie-baseline" data-a="{comp.candidate}" '
                       f'data-b="{comp.baseline}">{name_html(a)} vs {name_html(b)}: tie on '
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
    at = " / ".join(f"@{short_context(c)}" for c in r.confirm_contexts)
    name = describe(MetricKey(metric, r.confirm_contexts[0], device_class))
    return name.replace(f"@{short_context(r.confirm_contexts[0])}", at)


def staging_section(r: Report) -> str:
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
            f"{context_list(r.screen_contexts)}; confirmed <b>{t.confirmed}</b> of them and "
            f"{t.baselines_confirmed} baseline(s) at {context_list(r.confirm_contexts)}. Staging "
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


def provenance_section(r: Report) -> str:
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

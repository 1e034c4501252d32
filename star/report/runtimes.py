"""Where two runtimes agree: a run with ``cross_runtime`` measured every candidate with llama.cpp
(the objectives) and with ExecuTorch as well (not an objective), at the screening contexts.

Per candidate and context: both runtimes' TTFT, decode ms/token and peak RSS, and the ratio
other / primary; over candidates: the median ratio and Spearman's rank correlation of each
figure (do the runtimes order the architectures alike?). llama.cpp's figure is the one with
flash attention off, the setting ExecuTorch's attention matches. The LFM2 genomes are the
calibration point: both runtimes run them, and the ratio on them is what the others are read
against.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from html import escape

import numpy as np

from star.report import fmt
from star.report.model import RuntimeAgreement, RuntimePair
from star.search.objectives import short_context
from star.search.rundata import RunData, runtime_of
from star.search.store import MeasuredRow

FIGURES = ("ttft", "decode", "rss")
LABELS = {"ttft": "TTFT ms", "decode": "decode ms/token", "rss": "peak RSS MiB"}


def _figures(row: MeasuredRow) -> dict[str, float | None]:
    m = row.measurement
    return {"ttft": m.ttft_median_ms, "decode": m.decode_median_ms,
            "rss": None if m.peak_rss_bytes is None else m.peak_rss_bytes / 2**20}


def _spearman(a: list[float], b: list[float]) -> float | None:
    from star.proxy.fidelity import spearman

    if len(a) < 3:
        return None
    value = spearman(np.array(a), np.array(b))
    return None if np.isnan(value) else value


def runtime_agreement(data: RunData) -> RuntimeAgreement | None:
    """None for a run without ``cross_runtime`` (or before any cross measurement)."""
    other = data.config.cross_runtime
    if other is None:
        return None
    arch_of = {gid: ((c.analytic_costs or {}).get("prescreen") or {}).get("arch")
               for gid, c in data.candidates.items()}
    pairs = []
    for gid, cand in data.candidates.items():
        mine = {(r.device.id, r.measurement.context): r for r in data.measurements.get(cand.id, ())
                if not (r.measurement.runtime or {}).get("flash_attn")}
        for r in data.cross.get(cand.id, ()):
            if runtime_of(r) != other or r.measurement.error or r.measurement.oom:
                continue
            p = mine.get((r.device.id, r.measurement.context))
            if p is None or p.measurement.error or p.measurement.oom:
                continue
            pairs.append(RuntimePair(gid, arch_of.get(gid), r.device.name, r.measurement.context,
                                     _figures(p), _figures(r)))
    if not pairs:
        return None
    median: dict[str, float | None] = {}
    rank: dict[str, float | None] = {}
    calibration: dict[str, float | None] = {}
    for f in FIGURES:
        ratios = [x for p in pairs if (x := p.ratio(f)) is not None]
        median[f] = statistics.median(ratios) if ratios else None
        lfm2 = [x for p in pairs if p.arch in ("lfm2", "lfm2moe") and (x := p.ratio(f))]
        calibration[f] = statistics.median(lfm2) if lfm2 else None
        rhos = []
        for context in sorted({p.context for p in pairs}):
            both = [(a, b) for p in pairs if p.context == context
                    and (a := p.primary.get(f)) is not None and (b := p.other.get(f)) is not None]
            rho = _spearman([a for a, _ in both], [b for _, b in both])
            if rho is not None:
                rhos.append(rho)
        rank[f] = statistics.median(rhos) if rhos else None
    return RuntimeAgreement(data.config.runtime, other, tuple(pairs), median, rank, calibration)


def runtimes_section(agreement: RuntimeAgreement, names: Mapping[str, str]) -> str:
    """The report's section: the summary line, then one row per candidate and context."""
    a, b = escape(agreement.primary), escape(agreement.other)

    def num(v: float | None, digits: int = 2) -> str:
        return "–" if v is None else f"{v:.{digits}f}"

    summary = "; ".join(
        f"{LABELS[f]}: median {b}/{a} {num(agreement.median_ratio[f])}×"
        f" (LFM2 {num(agreement.calibration[f])}×), rank agreement ρ "
        f"{num(agreement.spearman[f])}" for f in FIGURES)
    head = "".join(f"<th>{LABELS[f]} {a}</th><th>{b}</th><th>×</th>" for f in FIGURES)
    rows = []
    for p in sorted(agreement.pairs, key=lambda p: (p.context, names.get(p.genome_id, ""))):
        cells = "".join(
            f'<td class="num">{fmt.num(p.primary[f])}</td><td class="num">{fmt.num(p.other[f])}'
            f'</td><td class="num">{num(p.ratio(f))}</td>' for f in FIGURES)
        rows.append(f"<tr><td>{escape(names.get(p.genome_id, p.genome_id[:8]))}</td>"
                    f"<td>{escape(p.arch or '?')}</td><td>{escape(p.device)}</td>"
                    f'<td class="num">{short_context(p.context)}</td>{cells}</tr>')
    return (f"<p>Every candidate was measured by {a} (the objectives; flash attention off here)"
            f" and by {b} at the screening contexts. {summary}. A ratio that differs between "
            "families says a runtime favours some operators; ρ near 1 says both runtimes rank "
            "the architectures alike.</p>"
            f"<table><tr><th>candidate</th><th>family</th><th>device</th><th>context</th>{head}"
            f"</tr>{''.join(rows)}</table>")

"""Gather a ``Report`` from a run's stored rows and their evaluations.

Every figure comes from ``star.search.rundata`` the way the search and ``star frontier`` judge
candidates (the better flash-attention setting per figure, the worst device of a class), so
the report cannot disagree with the frontier it explains. The frontier is recomputed with the
same rule as ``star.search.frontier.run_frontier``: feasible, measured (no staged estimate)
candidates, never baselines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from star.db.snapshots import CandidateSnapshot
from star.report import compare
from star.report.devicetime import device_time
from star.report.model import (
    MEASURED_METRICS,
    CandidateView,
    Comparison,
    Figure,
    ProvenanceRow,
    Report,
)
from star.report.quality import proxy_loss_spread
from star.report.runtimes import runtime_agreement
from star.report.strip import blocks, mix_summary
from star.search.evaluate import Evaluation
from star.search.frontier import pareto_front
from star.search.objectives import MEASURED, MetricKey, MetricValue, measured_value
from star.search.rundata import RunData, evaluate_run
from star.search.store import MeasuredRow


def _figure(got: MetricValue, *, estimated: bool = False) -> Figure:
    return Figure(value=got.value, spread=got.spread, flash_attn=got.flash_attn,
                  estimated=estimated, measurement_id=got.measurement_id, noisy=got.noisy,
                  tries=got.tries, note=got.reason)


def _spec_doc(data: RunData, cand: CandidateSnapshot) -> Mapping[str, Any] | None:
    """The deployment spec as stored (what was exported and measured), else decoded."""
    stored = (cand.arch_spec or {}).get("deploy")
    if isinstance(stored, Mapping) and stored.get("layers"):
        return stored
    try:
        return asdict(data.spec(cand.genome_hash))
    except (ValueError, KeyError):  # a genome this build cannot decode
        return None


def candidate_name(cand: CandidateSnapshot, spec: Mapping[str, Any] | None,
                   arch: str | None) -> str:
    """``lfm2 · 12 layers (8 conv + 4 attn) · 1a2b3c4d``; a baseline leads with its label."""
    layers = (cand.analytic_costs or {}).get("n_layers")
    shape = mix_summary(spec) if spec else (f"{layers} layers" if layers else "")
    parts = [arch or "unknown arch", *([shape] if shape else [])]
    if cand.is_baseline:
        return " · ".join([cand.label or cand.genome_hash[:8], *parts])
    return " · ".join([*parts, cand.genome_hash[:8]])


def _quality(cand: CandidateSnapshot, evaluation: Evaluation | None) -> Figure:
    proxy = cand.proxy_metrics
    value = evaluation.values.get("quality") if evaluation else None
    if value is None and proxy and not proxy.get("error"):
        value = proxy.get("quality")
    spread, how = proxy_loss_spread(proxy)
    return Figure(value=None if value is None else float(value), spread=spread, note=how)


def _objective_figures(evaluation: Evaluation, objectives: list[MetricKey],
                       quality: Figure) -> dict[str, Figure]:
    out = {}
    for key in objectives:
        if key.metric in MEASURED and key.name in evaluation.details:
            out[key.name] = _figure(evaluation.details[key.name],
                                    estimated=key.name in evaluation.estimated)
        elif key.metric == "quality":
            out[key.name] = quality
        else:  # analytic counts are exact
            out[key.name] = Figure(value=evaluation.values.get(key.name), spread=0.0)
    return out


def _view(data: RunData, cand: CandidateSnapshot, evaluation: Evaluation,
          objectives: list[MetricKey], figure_keys: list[MetricKey],
          on_front: bool) -> CandidateView:
    costs = cand.analytic_costs or {}
    prescreen = costs.get("prescreen") or {}
    arch = prescreen.get("arch")
    spec = _spec_doc(data, cand)
    rows = data.rows(cand)
    state = costs.get("state_bytes")
    kv = {int(c): float(v) for c, v in (costs.get("kv_bytes") or {}).items()}
    quality = _quality(cand, evaluation)
    return CandidateView(
        genome_id=cand.genome_hash, candidate_id=cand.id, role=cand.role, label=cand.label,
        generation=data.generation_of(cand), arch=arch, name=candidate_name(cand, spec, arch),
        blocks=tuple(blocks(spec)) if spec else (),
        params=costs.get("params"), non_embedding_params=costs.get("non_embedding_params"),
        active_params=costs.get("active_params"),
        weight_bytes=(costs.get("weight_bytes") or {}).get(data.config.cost_quant.value),
        kv_bytes_per_token=costs.get("kv_bytes_per_token"), state_bytes=state,
        cache_bytes={c: v + float(state or 0) for c, v in sorted(kv.items())},
        quality=quality,
        objectives=_objective_figures(evaluation, objectives, quality),
        figures={k.name: _figure(measured_value(k, rows)) for k in figure_keys},
        feasible=evaluation.feasible, reason=evaluation.reason, on_front=on_front,
        estimated=evaluation.estimated,
    )


def _comparison(a: CandidateView, b: CandidateView, objectives: list[str]) -> Comparison:
    cells = {k: compare.cell(k, a.figures[k], b.figures[k]) for k in a.figures}
    objective_cells = {k: compare.cell(k, a.objectives[k], b.objectives[k]) for k in objectives
                       if k in a.objectives and k in b.objectives}
    verdict = compare.verdict(objective_cells[k].outcome if k in objective_cells else "n/a"
                              for k in objectives)
    return Comparison(a.genome_id, b.genome_id, cells,
                      compare.cell("quality", a.quality, b.quality), objective_cells, verdict)


def _provenance(data: RunData) -> list[ProvenanceRow]:
    stage_of = {j.id: j.stage for jobs in data.jobs.values() for j in jobs}
    gid_of = {c.id: gid for gid, c in data.candidates.items()}
    out = []
    for source in (data.measurements, data.cross):
        for cid, rows in source.items():
            for row in rows:
                out.append(_provenance_row(row, gid_of[cid],
                                           stage_of.get(row.measurement.job_id)))
    return sorted(out, key=lambda r: r.measurement_id)


def _provenance_row(row: MeasuredRow, genome_id: str, stage: str | None) -> ProvenanceRow:
    m, d = row.measurement, row.device
    rt = m.runtime or {}
    fa = rt.get("flash_attn")
    cond = m.conditions or {}
    parts = []
    if cond.get("load_1m") is not None:
        parts.append(f"load {cond['load_1m']:.2f}")
    if cond.get("cpu_steal_pct") is not None:
        parts.append(f"steal {cond['cpu_steal_pct']:.0f}%")
    if cond.get("other_cpu_pct") is not None:
        parts.append(f"others {cond['other_cpu_pct']:.0f}% CPU")
    if cond.get("waited_s"):
        parts.append(f"waited {cond['waited_s']:.0f} s")
    if cond and not cond.get("quiet", True):
        parts.append("not quiet")
    temps = ""
    if m.temp_before_c is not None or m.temp_after_c is not None:
        temps = f"{_temp(m.temp_before_c)} → {_temp(m.temp_after_c)} °C"
    return ProvenanceRow(
        measurement_id=m.id, genome_id=genome_id, stage=stage, device=d.name,
        device_class=":".join([d.kind, *d.tags]), context=m.context,
        flash_attn=None if fa is None else bool(fa),
        commit=_runtime_name(rt),
        build_flags=tuple(rt.get("build_flags") or ()), threads=rt.get("threads"),
        repetitions=rt.get("repetitions"), n_gen=rt.get("n_gen"), tries=m.tries,
        ttft_ms=m.ttft_median_ms, ttft_sd=m.ttft_stddev_ms, decode_ms=m.decode_median_ms,
        decode_sd=m.decode_stddev_ms,
        peak_rss_mb=None if m.peak_rss_bytes is None else m.peak_rss_bytes / 2**20,
        oom=m.oom, error=m.error, noisy=m.flagged_noisy, hot=m.flagged_hot,
        conditions=", ".join(parts) + (f" ({cond['note']})" if cond.get("note") else ""),
        temperatures=temps,
        kv_cache=f"{rt.get('cache_type_k', 'f16')}/{rt.get('cache_type_v', 'f16')}",
        cpu=str(rt.get("cpu_model") or ""),
    )


def _runtime_name(rt: Mapping[str, Any]) -> str:
    """"llama.cpp b9a3dcc" or "executorch 1.5.1+cpu (xnnpack)": the build that measured."""
    if rt.get("runtime", "llama.cpp") != "llama.cpp":
        delegate = f" ({rt['delegate']})" if rt.get("delegate") else ""
        return f"{rt['runtime']} {rt.get('runtime_version') or '?'}{delegate}"
    return f"llama.cpp {rt.get('llama_cpp_commit') or '?'}"


def _temp(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f}"


def _runtimes(rows: list[ProvenanceRow]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        flags = f", build {' '.join(r.build_flags)}" if r.build_flags else ""
        seen[f"{r.commit}, {r.threads} thread{'s' if r.threads != 1 else ''}, "
             f"KV cache {r.kv_cache}{flags}"] = None
    return list(seen)


def build_report(data: RunData, evaluations: Mapping[str, Evaluation] | None = None) -> Report:
    """The report of one run (``evaluations``: ``evaluate_run(data)`` if not given)."""
    config = data.config
    objectives = config.objective_keys()
    names = [k.name for k in objectives]
    evaluations = evaluations if evaluations is not None else evaluate_run(data)
    eligible = [gid for gid, e in evaluations.items()
                if e.feasible and not e.estimated and not data.candidates[gid].is_baseline]
    front_set = {eligible[i] for i in pareto_front([evaluations[g].F for g in eligible])}
    classes = config.measured_classes()
    figure_keys = [MetricKey(metric, c, cls) for cls in classes for c in sorted(config.contexts)
                   for metric in MEASURED_METRICS]
    views = {gid: _view(data, data.candidates[gid], e, objectives, figure_keys, gid in front_set)
             for gid, e in evaluations.items() if gid in data.candidates}
    front = sorted(front_set, key=lambda g: (evaluations[g].F, g))
    baselines = [gid for gid, v in views.items() if v.is_baseline]
    comparisons = [_comparison(views[f], views[b], names) for f in front for b in baselines]
    ties = compare.front_ties(front, {g: views[g].objectives for g in front}, names)
    provenance = _provenance(data)
    runtimes = _runtimes(provenance)
    notes = []
    if len({(r.commit, r.build_flags) for r in provenance
            if r.commit.startswith("llama.cpp")}) > 1:
        notes.append("figures come from more than one llama.cpp build: builds are not "
                     "comparable (a native build prefilled ~2x faster than a portable one)")
    flagged = sum(r.noisy or r.hot for r in provenance)
    if flagged:
        notes.append(f"{flagged} of {len(provenance)} measurements are flagged noisy or hot "
                     "(see provenance)")
    if not baselines:
        notes.append("the run has no baselines: nothing to compare the frontier against")
    return Report(
        run=data.run.name, run_id=data.run.id, status=(data.run.config or {}).get("status"),
        quant=config.artifact_quant, contexts=tuple(sorted(config.contexts)),
        screen_contexts=tuple(config.screen_contexts()),
        confirm_contexts=tuple(config.confirm_contexts()), device_classes=tuple(classes),
        objectives=tuple(names), budgets=tuple((b.name, "≥" if b.lower else "≤", b.limit)
                                               for b in config.bounds()),
        repetitions=config.repetitions, n_gen=config.n_gen,
        flash_attn=tuple(config.flash_attn), generations=len(data.generations),
        candidates=views, front=tuple(front), baselines=tuple(baselines),
        comparisons=tuple(comparisons), ties=tuple(ties), device_time=device_time(data),
        provenance=tuple(provenance), runtimes=tuple(runtimes), notes=tuple(notes),
        runtime_agreement=runtime_agreement(data),
    )

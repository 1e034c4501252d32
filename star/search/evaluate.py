"""A candidate's objective values, budget constraints and feasibility, from stored rows only.

pymoo gets, per candidate:

- ``F``: one value per objective (all minimised). A value that is missing (not measured, failed)
  or infinite (OOM) is ``MISSING`` (1e30): finite, exact in JSON, and never looked at by NSGA-II,
  because such a candidate is infeasible and infeasible ones are ranked by violation only.
- ``G``: one column per budget, ``(value - max) / max`` (``value - max`` when max is 0): the
  sign is ``value - max <= 0``, and the scale makes violations of budgets in different units
  (MiB, ms) comparable in pymoo's summed violation. A budget whose value is unknown contributes 0,
  except a pre-screen lower bound (e.g. weights + KV already above a peak-RSS budget), which is
  used instead. A last column is 1 when anything is missing (pre-screen, export, proxy training,
  a measurement) and 0 otherwise: "not evaluated" is infeasible, with its reason kept.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from star.db.snapshots import CandidateSnapshot, JobSnapshot
from star.search.objectives import (
    MEASURED,
    Bound,
    DeviceMeasurement,
    MetricKey,
    MetricValue,
    measured_value,
    value,
)
from star.search.store import MeasuredRow

MISSING = 1e30


@dataclass(frozen=True)
class Evaluation:
    genome_id: str
    candidate_id: int | None
    values: dict[str, float | None]  # metric name -> value (inf: OOM), None: missing
    F: list[float]
    G: list[float]
    feasible: bool
    reason: str = ""  # why infeasible ("" when feasible)
    notes: list[str] = field(default_factory=list)
    # metrics whose value is a staged estimate (not confirmed at that context; star.search.stages)
    estimated: tuple[str, ...] = ()
    # measured metrics with where they came from (setting, spread, tries)
    details: dict[str, MetricValue] = field(default_factory=dict)


def device_measurements(rows: Sequence[MeasuredRow], *,
                        device_id: int | None = None) -> list[DeviceMeasurement]:
    out = []
    for row in rows:
        if device_id is not None and row.device.id != device_id:
            continue
        m = row.measurement
        fa = (m.runtime or {}).get("flash_attn")
        out.append(
            DeviceMeasurement(
                device_kind=row.device.kind,
                device_tags=tuple(row.device.tags),
                context=m.context,
                ttft_ms=m.ttft_median_ms,
                decode_ms=m.decode_median_ms,
                peak_rss_bytes=m.peak_rss_bytes,
                oom=m.oom,
                error=m.error,
                device_id=row.device.id,
                flash_attn=None if fa is None else bool(fa),
                ttft_stddev_ms=m.ttft_stddev_ms,
                decode_stddev_ms=m.decode_stddev_ms,
                noisy=m.flagged_noisy,
                hot=m.flagged_hot,
                tries=m.tries,
                measurement_id=m.id,
            )
        )
    return out


def _job_note(key: MetricKey, jobs: Sequence[JobSnapshot],
              deadline_cancelled: Collection[int] = ()) -> str:
    """Why a measured metric has no value, from its job's state (without the metric's name)."""
    mine = [
        j for j in jobs
        if j.device_kind == key.kind and set(j.device_tags) == set(key.tags)
        and key.context in j.contexts
    ]
    if not mine:
        return f"no profile job on class {key.device_class!r} at {key.context} tokens"
    j = mine[-1]
    state = j.state.value
    if state == "done":
        return f"job {j.id} is done but has no measurement at {key.context} tokens"
    if state == "cancelled":
        if j.id in deadline_cancelled:  # runs stored before the reason was kept on the job
            return f"job {j.id} was cancelled at the generation deadline"
        why = (j.last_error or "").removeprefix("cancelled ") or "by an operator"
        return f"job {j.id} was cancelled {why}"
    detail = f": {j.last_error}" if j.last_error else ""
    if state in ("queued", "leased"):
        return f"job {j.id} is still {state}{detail}"
    return f"job {j.id} {state}{detail}"


def evaluate(
    genome_id: str,
    candidate: CandidateSnapshot | None,
    *,
    objectives: Sequence[MetricKey],
    budgets: Sequence[Bound | tuple[MetricKey, float]],
    entry: Mapping[str, Any] | None = None,
    measurements: Sequence[DeviceMeasurement] = (),
    jobs: Sequence[JobSnapshot] = (),
    deadline_cancelled: Collection[int] = (),
    estimates: Mapping[str, MetricValue] | None = None,
) -> Evaluation:
    """Values, F and G of one candidate (see the module doc). ``estimates``: staged estimates
    of long-context metrics this candidate was not confirmed at; used where no measurement
    is."""
    entry = entry or {}
    notes: list[str] = []
    if candidate is None:
        notes.append("candidate not stored")
    analytic = dict(candidate.analytic_costs or {}) if candidate else {}
    prescreen = analytic.get("prescreen") or {}
    if prescreen and not prescreen.get("ok", True):
        notes.append(f"pre-screen: {prescreen.get('reason')}")
    if entry.get("export_error"):
        notes.append(f"export: {entry['export_error']}")
    proxy = candidate.proxy_metrics if candidate else None
    stage_failed = bool(notes)  # then per-metric gaps are consequences, not reasons

    bounds_ = [Bound.of(b) for b in budgets]
    values: dict[str, float | None] = {}
    details: dict[str, MetricValue] = {}
    estimated: list[str] = []
    keys = list(objectives) + [b.key for b in bounds_]
    by_job: dict[str, list[str]] = {}  # one note per job, naming the metrics it left missing
    for key in keys:
        if key.name in values:
            continue
        if key.metric in MEASURED:
            got = measured_value(key, measurements)
            if got.value is None and estimates and key.name in estimates:
                got = estimates[key.name]
                estimated.append(key.name)
            details[key.name] = got
            v, why = got.value, got.reason
        else:
            v, why = value(key, analytic=analytic, proxy=proxy, measurements=measurements)
        values[key.name] = v
        if (v is not None and not math.isinf(v)) or stage_failed:
            continue
        if v is None and key.metric in MEASURED and why.startswith("no measurement"):
            by_job.setdefault(_job_note(key, jobs, deadline_cancelled), []).append(key.name)
        else:
            notes.append(f"{key.name}: {why or 'no value'}")
    notes += [f"{', '.join(names)}: {note}" for note, names in by_job.items()]

    F = [_finite(values[k.name]) for k in objectives]
    G: list[float] = []
    bounds = prescreen.get("bounds") or {}
    for bound in bounds_:
        v = values[bound.name]
        if v is None and not bound.lower:  # a pre-screen lower bound breaks only a maximum
            v = bounds.get(bound.name)
        if v is None:
            G.append(0.0)
        elif math.isinf(v):
            G.append(-MISSING if bound.lower else MISSING)
        else:
            G.append(bound.violation(v))
    missing = any(values[k.name] is None or math.isinf(values[k.name] or 0.0) for k in keys)
    missing = missing or bool(notes)
    G.append(1.0 if missing else 0.0)
    over = [b.broken(values[b.name] or 0.0) for b, g in zip(bounds_, G, strict=False)
            if g > 0 and values[b.name] is not None and not math.isinf(values[b.name] or 0.0)]
    notes += [o for o in over if not any(o in n for n in notes)]
    feasible = all(g <= 0 for g in G)
    return Evaluation(
        genome_id=genome_id,
        candidate_id=candidate.id if candidate else None,
        values=values,
        F=F,
        G=G,
        feasible=feasible,
        reason="; ".join(dict.fromkeys(notes)) if not feasible else "",
        notes=notes,
        estimated=tuple(estimated),
        details=details,
    )


def _finite(v: float | None) -> float:
    if v is None or math.isinf(v) or math.isnan(v):
        return MISSING
    return float(v)

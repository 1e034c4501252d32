"""Device time a run spent, what its staging saved, and how good the staged estimates were.

Nothing records how long a device was busy, so the time is estimated from the figures, the way
llama-bench spends it (FACTS.md): a TTFT run at context C is ``repetitions + 1`` prefills of C
tokens (one warm-up; none from ``warmup_below`` tokens on, as recorded), a decode run at depth
C one (untimed, cached) depth prefill plus ``n_gen x repetitions`` generated tokens::

    cost(C) = prefills(C) x TTFT(C) + n_gen x repetitions x decode(C)

times the measurement's tries (a noisy or hot figure is re-measured). Model loading and
cool-down waits are left out, so both figures are lower bounds. What staging saved is the
cost of the confirm-stage jobs it did not run: for every screened, unconfirmed candidate and
each of its screen jobs (device class x flash-attention setting), the confirm contexts priced
with the staged estimates of TTFT and decode (the screen figure carried to the longer context
by the cost model, times the run's calibration factor).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

from device_agents.llamacpp.commands import BenchSettings, prefills
from star.db.models import JobStage
from star.db.snapshots import MeasurementSnapshot
from star.genome.spec import ArchSpec
from star.report.model import CalibrationRow, DeviceTime
from star.search.objectives import MEASURED, MetricKey, measured_value
from star.search.rundata import RunData
from star.search.stages import CALIBRATION_CLIP, Calibration, grow, raw_estimate, source_context

METHOD = (
    "Estimated from the figures as llama-bench spends time: per measurement "
    "(repetitions + 2) x TTFT (warm-up, timed prefills, the decode run's depth prefill) "
    "+ n_gen x repetitions x decode, times its tries; model loading and cool-down are not "
    "counted. Saved: the confirm-stage jobs not run, priced with the calibrated staged "
    "estimates.")


def run_cost_ms(ttft_ms: float, decode_ms: float, repetitions: int, n_gen: int, *,
                context: int | None = None, warmup_below: int | None = None) -> float:
    """One context of one llama-bench job (see the module doc); from ``warmup_below`` tokens
    on the TTFT run has no warm-up prefill (``device_agents.llamacpp.commands.prefills``)."""
    n = prefills(context, repetitions, warmup_below) if context is not None else repetitions + 2
    return n * ttft_ms + n_gen * repetitions * decode_ms


def _class_of(kind: str | None, tags: Iterable[str]) -> str:
    return ":".join([kind or "", *tags])


def spent(data: RunData) -> tuple[float, int, int]:
    """(ms spent, measurements priced, measurements without both timings)."""
    total, priced, unpriced = 0.0, 0, 0
    for rows in data.measurements.values():
        for row in rows:
            m = row.measurement
            if m.ttft_median_ms is None or m.decode_median_ms is None:
                unpriced += 1
                continue
            rt = m.runtime or {}
            reps = int(rt.get("repetitions") or 1)
            n_gen = int(rt.get("n_gen") or data.config.n_gen)
            total += m.tries * run_cost_ms(m.ttft_median_ms, m.decode_median_ms, reps, n_gen,
                                           context=m.context,
                                           warmup_below=rt.get("warmup_below"))
            priced += 1
    return total, priced, unpriced


def _long_keys(data: RunData) -> list[MetricKey]:
    return [MetricKey(metric, c, cls) for cls in data.config.measured_classes()
            for c in data.config.confirm_contexts() for metric in sorted(MEASURED)]


def _spec_or_none(data: RunData, genome_id: str) -> ArchSpec | None:
    try:
        return data.spec(genome_id)
    except (ValueError, KeyError):  # a genome this build cannot decode: not priced
        return None


def saved(data: RunData, calibration: Calibration) -> tuple[float, int]:
    """(ms the unrun confirm jobs would have cost, how many such jobs)."""
    config = data.config
    screen = config.screen_contexts()
    reps = (config.staging.confirm_repetitions if config.staging else None) or config.repetitions
    total, jobs = 0.0, 0
    for gid, cand in data.candidates.items():
        if cand.is_baseline or data.confirmation_asked(cand):
            continue
        spec = _spec_or_none(data, gid)
        by_job: dict[int, dict[int, MeasurementSnapshot]] = {}
        for row in data.measurements.get(cand.id, []):
            by_job.setdefault(row.measurement.job_id, {})[row.measurement.context] = (
                row.measurement)
        for job in data.jobs.get(cand.id, []):
            if spec is None or job.stage not in (None, JobStage.SCREEN.value):
                continue
            cost = _confirm_cost(spec, by_job.get(job.id, {}), data, calibration,
                                 _class_of(job.device_kind, job.device_tags),
                                 bool(job.flash_attn), screen, reps)
            if cost is not None:
                total += cost
                jobs += 1
    return total, jobs


def _confirm_cost(spec: ArchSpec, figures: dict[int, MeasurementSnapshot], data: RunData,
                  calibration: Calibration, device_class: str, flash_attn: bool,
                  screen: Sequence[int], reps: int) -> float | None:
    """The confirm job one screen job would have needed, priced from its screen figures."""
    config = data.config
    cost = 0.0
    for context in config.confirm_contexts():
        frm = source_context(context, screen)
        m = figures.get(frm) if frm is not None else None
        if frm is None or m is None or m.ttft_median_ms is None or m.decode_median_ms is None:
            return None
        est = {}
        for metric, figure in (("ttft_ms", m.ttft_median_ms), ("decode_ms", m.decode_median_ms)):
            factor = calibration.factors.get((metric, device_class), 1.0)
            est[metric] = factor * grow(metric, figure, spec, config.cost_quant, frm, context,
                                        flash_attn)
        cost += run_cost_ms(est["ttft_ms"], est["decode_ms"], reps, config.n_gen,
                            context=context, warmup_below=BenchSettings.warmup_below)
    return cost


def _pairs(data: RunData, keys: Sequence[MetricKey]) -> list[tuple[MetricKey, float, float]]:
    """(key, raw estimate, measured) of every confirmed candidate: what
    ``rundata.calibrate`` fits on, kept here so the leave-one-out error uses the same pairs."""
    out = []
    screen = data.config.screen_contexts()
    for gid, cand in data.candidates.items():
        if not data.confirmation_asked(cand):
            continue
        rows = data.rows(cand)
        spec = _spec_or_none(data, gid)
        if spec is None:
            continue
        for key in keys:
            got = measured_value(key, rows).value
            est = raw_estimate(key, spec, data.config.cost_quant, rows, screen).value
            if got is not None and est is not None:
                out.append((key, est, got))
    return out


def _ratios(pairs: Sequence[tuple[MetricKey, float, float]]
            ) -> dict[tuple[str, str | None], list[float]]:
    """measured / estimate per (metric, class), over the pairs ``Calibration.fit`` keeps."""
    out: dict[tuple[str, str | None], list[float]] = {}
    for key, est, got in pairs:
        if est > 0 and got > 0 and math.isfinite(est) and math.isfinite(got):
            out.setdefault((key.metric, key.device_class), []).append(got / est)
    return out


def _loo_error(ratios: list[float]) -> float | None:
    """Median |log error| when each candidate's own ratio is left out of its factor."""
    if len(ratios) < 2:
        return None
    lo, hi = CALIBRATION_CLIP
    errors = []
    for i, r in enumerate(ratios):
        factor = min(max(statistics.median(ratios[:i] + ratios[i + 1:]), lo), hi)
        errors.append(abs(math.log(r / factor)))
    return statistics.median(errors)


def device_time(data: RunData) -> DeviceTime:
    spent_ms, priced, unpriced = spent(data)
    asked = [c for c in data.candidates.values() if not c.is_baseline]
    screened = sum(1 for c in asked if any(j.stage in (None, JobStage.SCREEN.value)
                                           for j in data.jobs.get(c.id, [])))
    confirmed = sum(1 for c in asked if data.confirmation_asked(c))
    baselines = sum(1 for c in data.baselines if data.confirmation_asked(c))
    rows: list[CalibrationRow] = []
    saved_s: float | None = None
    saved_jobs = 0
    if data.config.staging is not None:
        keys = _long_keys(data)
        pairs = _pairs(data, keys)
        calibration = Calibration.fit(pairs)  # as rundata.calibrate fits it
        ratios = _ratios(pairs)
        for group in sorted(calibration.factors, key=lambda g: (str(g[1]), g[0])):
            rows.append(CalibrationRow(
                metric=group[0], device_class=group[1], factor=calibration.factors[group],
                count=calibration.counts[group], error=calibration.errors[group],
                loo_error=_loo_error(ratios.get(group, []))))
        saved_ms, saved_jobs = saved(data, calibration)
        saved_s = saved_ms / 1e3
    return DeviceTime(spent_s=spent_ms / 1e3, measurements=priced, unpriced=unpriced,
                      screened=screened, confirmed=confirmed, baselines_confirmed=baselines,
                      saved_s=saved_s, saved_jobs=saved_jobs, calibration=tuple(rows),
                      method=METHOD)


def describe_error(log_error: float) -> str:
    """A median |log error| as a percentage a reader can use: 0.049 -> "±5%"."""
    return f"±{100 * (math.exp(log_error) - 1):.0f}%"


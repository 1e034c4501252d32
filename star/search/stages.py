"""Staged contexts: screen every candidate short, confirm the promising ones long.

A 32K prefill costs minutes on a phone or a laptop CPU; measuring every candidate there would
spend most of a study's device time on candidates that are nowhere near the frontier. So a run
with ``staging`` measures every candidate at the *screen* contexts and, per generation, only the
candidates near the frontier (and every baseline) at the *confirm* contexts.

Until a candidate is confirmed, each long-context figure is **estimated** from its screening
figure at the nearest shorter context and the analytic cost model's growth between the two
contexts, per flash-attention setting:

- TTFT and decode latency scale by the ratio of roofline times (``star.cost.roofline``) at the
  two contexts (prefill FLOPs; decode bytes read per token and FLOPs);
- peak RSS grows by the KV cache between the two contexts, plus, with flash attention off, the
  attention-score buffer llama.cpp allocates (micro-batch x context x heads x 4 bytes).

The estimates are then **calibrated** on what was confirmed: per metric and device class, the
median ratio measured / estimated over every confirmed candidate (baselines are always
confirmed, so calibration starts in the first generation). The estimates rank candidates for
NSGA-II and choose who is confirmed; the reported frontier uses confirmed figures only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from star.cost import Quant
from star.cost.roofline import DeviceRoofline, decode_seconds, ttft_seconds
from star.genome.spec import ArchSpec, AttentionSpec
from star.search.objectives import MEASURED, DeviceMeasurement, MetricKey, MetricValue

# Only ratios of roofline times are used, so the device's absolute speed hardly matters; its
# balance (bytes per FLOP) decides whether decode is read- or compute-bound.
NOMINAL_CPU = DeviceRoofline("nominal CPU", bandwidth=20e9, flops=100e9)
# llama.cpp's default micro-batch (-ub): with flash attention off each attention layer's scores
# for one micro-batch over the whole context are materialised in f32.
SCORE_UBATCH = 512
# A calibration factor outside this range means the estimate is wrong in kind, not in scale.
CALIBRATION_CLIP = (0.2, 5.0)


def source_context(context: int, screen: Sequence[int]) -> int | None:
    """The screening context an estimate at ``context`` starts from: the largest one not above
    it, else the smallest one (None when nothing is screened)."""
    if not screen:
        return None
    below = [c for c in screen if c <= context]
    return max(below) if below else min(screen)


def _attention_heads(spec: ArchSpec) -> int:
    return max((layer.mixer.n_heads for layer in spec.layers
                if isinstance(layer.mixer, AttentionSpec)), default=0)


def _score_buffer_bytes(spec: ArchSpec, context: int) -> float:
    heads = _attention_heads(spec)
    return float(SCORE_UBATCH * context * heads * 4) if heads else 0.0


def grow(metric: str, figure: float, spec: ArchSpec, quant: Quant, frm: int, to: int,
         flash_attn: bool) -> float:
    """A figure measured at context ``frm`` carried to context ``to`` by the cost model."""
    if math.isinf(figure) or frm == to:
        return figure
    if metric == "ttft_ms":
        return figure * (ttft_seconds(spec, to, NOMINAL_CPU, quant)
                         / ttft_seconds(spec, frm, NOMINAL_CPU, quant))
    if metric == "decode_ms":
        return figure * (decode_seconds(spec, to, NOMINAL_CPU, quant)
                         / decode_seconds(spec, frm, NOMINAL_CPU, quant))
    if metric == "peak_rss_mb":
        from star.cost import kv_bytes

        extra = kv_bytes(spec, to) - kv_bytes(spec, frm)
        if not flash_attn:
            extra += _score_buffer_bytes(spec, to) - _score_buffer_bytes(spec, frm)
        return figure + extra / 2**20
    raise ValueError(f"no estimate for metric {metric!r}")


def raw_estimate(key: MetricKey, spec: ArchSpec, quant: Quant,
                 measurements: Iterable[DeviceMeasurement],
                 screen: Sequence[int]) -> MetricValue:
    """``key`` (a measured metric at a confirm context) from the screening measurements:
    per device and setting grown by the cost model, then the best setting, the worst device
    (the rule of ``objectives.measured_value``)."""
    assert key.metric in MEASURED and key.context is not None, key
    frm = source_context(key.context, screen)
    if frm is None:
        return MetricValue(None, "nothing screened")
    rows = [m for m in measurements if key.serves(m) and m.context == frm]
    if not rows:
        return MetricValue(None, f"no screening measurement at {frm} tokens")
    by_device: dict[object, dict[bool, DeviceMeasurement]] = {}
    for m in rows:
        mine = by_device.setdefault(m.device_id if m.device_id is not None else id(m), {})
        setting = bool(m.flash_attn)
        if setting not in mine or (m.measurement_id or 0) >= (mine[setting].measurement_id or 0):
            mine[setting] = m
    worst: MetricValue | None = None
    for settings in by_device.values():
        best: MetricValue | None = None
        for setting, m in sorted(settings.items()):
            if m.oom:
                got = MetricValue(math.inf, f"OOM at {frm} tokens", setting)
            else:
                figure = None if m.error else m.figure(key.metric)
                if figure is None:
                    continue
                got = MetricValue(grow(key.metric, figure, spec, quant, frm, key.context,
                                       setting), f"estimated from {frm} tokens", setting)
            if best is None or (got.value or 0) < (best.value or 0):
                best = got
        if best is None:
            return MetricValue(None, f"no usable screening figure at {frm} tokens")
        if worst is None or (best.value or 0) > (worst.value or 0):
            worst = best
    assert worst is not None
    return worst


def _group(key: MetricKey) -> tuple[str, str | None]:
    return key.metric, key.device_class


@dataclass(frozen=True)
class Calibration:
    """Per (metric, device class): the median of measured / estimated over confirmed
    candidates, and how many confirmed candidates it stands on."""

    factors: Mapping[tuple[str, str | None], float]
    counts: Mapping[tuple[str, str | None], int]
    # |log(measured / calibrated estimate)| median per group: the estimates' typical error
    errors: Mapping[tuple[str, str | None], float]

    @classmethod
    def fit(cls, pairs: Iterable[tuple[MetricKey, float, float]]) -> Calibration:
        """``pairs``: (key, raw estimate, measured) of confirmed candidates (finite, > 0)."""
        ratios: dict[tuple[str, str | None], list[float]] = {}
        for key, est, got in pairs:
            if est > 0 and got > 0 and math.isfinite(est) and math.isfinite(got):
                ratios.setdefault(_group(key), []).append(got / est)
        factors, counts, errors = {}, {}, {}
        lo, hi = CALIBRATION_CLIP
        for group, values in ratios.items():
            factor = min(max(statistics.median(values), lo), hi)
            factors[group] = factor
            counts[group] = len(values)
            errors[group] = statistics.median(abs(math.log(v / factor)) for v in values)
        return cls(factors, counts, errors)

    def apply(self, key: MetricKey, estimate: MetricValue) -> MetricValue:
        factor = self.factors.get(_group(key))
        if factor is None or estimate.value is None or math.isinf(estimate.value):
            return estimate
        n = self.counts[_group(key)]
        return replace(estimate, value=estimate.value * factor,
                       reason=f"{estimate.reason}, calibrated x{factor:.2f} on {n} confirmed")


def choose_confirm(generation: Sequence[str], points: Mapping[str, Sequence[float]],
                   *, confirmed: Iterable[str], rank: int, cap: int | None) -> list[str]:
    """Which of ``generation`` to confirm: those in the first ``rank`` non-dominated fronts of
    ``points`` (objective vectors of every evaluated candidate of the run, long-context values
    estimated where not confirmed; a candidate with a missing value is not in ``points``),
    not yet confirmed; at most ``cap``, preferring lower fronts, then a lower sum of
    per-objective ranks, then the genome id (deterministic)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    done = set(confirmed)
    ids = [g for g in points if all(math.isfinite(v) for v in points[g])]
    if not ids:
        return []
    F = np.asarray([points[g] for g in ids], dtype=float)
    fronts = NonDominatedSorting().do(F)
    front_of = {ids[i]: k for k, front in enumerate(fronts) for i in front}
    order = np.argsort(np.argsort(F, axis=0, kind="stable"), axis=0, kind="stable").sum(axis=1)
    rank_sum = {g: int(order[i]) for i, g in enumerate(ids)}
    mine = [g for g in dict.fromkeys(generation)
            if g in front_of and front_of[g] < rank and g not in done]
    mine.sort(key=lambda g: (front_of[g], rank_sum[g], g))
    return mine if cap is None else mine[:cap]

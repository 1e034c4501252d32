"""The report as data: frozen values that ``star.report.build`` gathers from a run's stored rows
and ``star.report.html`` draws. Nothing here reads the database or writes HTML, so the same
report can be rendered as a file, inside the run page, or checked in a test figure by figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from star.report.strip import Block

Outcome = Literal["better", "worse", "tie", "n/a"]
Verdict = Literal["dominates", "tie", "trade-off", "dominated", "incomplete"]
MEASURED_METRICS = ("ttft_ms", "decode_ms", "peak_rss_mb")


@dataclass(frozen=True)
class Figure:
    """One number shown in the report, with where it came from."""

    value: float | None  # inf: OOM; None: missing (``note`` says why)
    spread: float | None = None  # stddev over repetitions, or the proxy loss's standard error
    flash_attn: bool | None = None  # the setting that gave it (None: one setting / not measured)
    estimated: bool = False  # a staged estimate, not a measurement
    measurement_id: int | None = None
    noisy: bool = False
    tries: int = 1
    note: str = ""

    @property
    def known(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class CandidateView:
    """A candidate or baseline as a reader sees it: a name, a layer strip, its costs and its
    figures (``figures``: measured metric name ``ttft_ms@4096/x86`` -> figure, at every
    context and device class; ``objectives``: the run's objectives as evaluated, estimates
    included)."""

    genome_id: str
    candidate_id: int
    role: str
    label: str | None
    generation: int | None
    arch: str | None
    name: str
    blocks: tuple[Block, ...]
    params: int | None
    non_embedding_params: int | None
    active_params: int | None
    weight_bytes: int | None  # at the run's quantization
    kv_bytes_per_token: float | None
    state_bytes: int | None
    cache_bytes: Mapping[int, float]  # KV cache + recurrent state holding C tokens
    quality: Figure
    objectives: Mapping[str, Figure]
    figures: Mapping[str, Figure]
    feasible: bool
    reason: str
    on_front: bool
    estimated: tuple[str, ...] = ()

    @property
    def is_baseline(self) -> bool:
        return self.role == "baseline"

    @property
    def short_id(self) -> str:
        return self.genome_id[:8]


@dataclass(frozen=True)
class Cell:
    """One figure of a candidate against the same figure of a baseline."""

    key: str  # metric name (``ttft_ms@4096/x86``, ``quality``)
    candidate: Figure
    baseline: Figure
    outcome: Outcome

    @property
    def ratio(self) -> float | None:
        """candidate / baseline (below 1: the candidate is lower, i.e. better)."""
        a, b = self.candidate.value, self.baseline.value
        if a is None or b is None or b == 0 or math.isinf(a) or math.isinf(b):
            return None
        return a / b


@dataclass(frozen=True)
class Comparison:
    """A frontier candidate against a baseline: every measured figure (each metric, context
    and device class), the proxy loss, and the verdict over the run's objectives."""

    candidate: str  # genome id
    baseline: str
    cells: Mapping[str, Cell]  # measured metric name -> cell
    quality: Cell
    objectives: Mapping[str, Cell]  # the run's objectives -> cell
    verdict: Verdict

    def beats_at(self, context: int, device_class: str) -> bool | None:
        """No measured figure at (context, class) worse beyond spread and at least one
        better; None when a figure is missing."""
        cells = [self.cells.get(f"{m}@{context}/{device_class}") for m in MEASURED_METRICS]
        if any(c is None or c.outcome == "n/a" for c in cells):
            return None
        outcomes = [c.outcome for c in cells if c is not None]
        return "worse" not in outcomes and "better" in outcomes


@dataclass(frozen=True)
class Tie:
    """Two frontier candidates whose every objective lies within each other's spread: as far
    as the measurements can tell, the same point of the frontier."""

    a: str
    b: str
    objectives: tuple[str, ...]


@dataclass(frozen=True)
class CalibrationRow:
    """How well staged long-context estimates matched what was then measured."""

    metric: str
    device_class: str | None
    factor: float  # measured / raw estimate, median
    count: int  # confirmed candidates it stands on
    error: float  # median |log(measured / calibrated estimate)|, in-sample
    loo_error: float | None  # the same, each candidate left out of its own factor


@dataclass(frozen=True)
class DeviceTime:
    """Device time spent on the run, and (staged runs) what confirming everyone would have
    added, both estimated from the figures (see ``star.report.devicetime``)."""

    spent_s: float
    measurements: int
    unpriced: int  # measurements without both timings (OOM, error): not counted
    screened: int  # candidates (not baselines) measured at the screen contexts
    confirmed: int  # candidates (not baselines) measured at the confirm contexts
    baselines_confirmed: int
    saved_s: float | None  # None: the run is not staged
    saved_jobs: int
    calibration: tuple[CalibrationRow, ...]
    method: str


@dataclass(frozen=True)
class ProvenanceRow:
    """One stored measurement with everything that can change its figures."""

    measurement_id: int
    genome_id: str
    stage: str | None
    device: str
    device_class: str
    context: int
    flash_attn: bool | None
    commit: str
    build_flags: tuple[str, ...]
    threads: int | None
    repetitions: int | None
    n_gen: int | None
    tries: int
    ttft_ms: float | None
    ttft_sd: float | None
    decode_ms: float | None
    decode_sd: float | None
    peak_rss_mb: float | None
    oom: bool
    error: str | None
    noisy: bool
    hot: bool
    conditions: str
    temperatures: str
    kv_cache: str
    cpu: str


@dataclass(frozen=True)
class RuntimePair:
    genome_id: str
    arch: str | None
    device: str
    context: int
    primary: Mapping[str, float | None]  # figure -> value
    other: Mapping[str, float | None]

    def ratio(self, figure: str) -> float | None:
        a, b = self.primary.get(figure), self.other.get(figure)
        return None if not a or b is None else b / a


@dataclass(frozen=True)
class RuntimeAgreement:
    primary: str
    other: str
    pairs: tuple[RuntimePair, ...]
    median_ratio: Mapping[str, float | None]  # figure -> median other/primary over pairs
    spearman: Mapping[str, float | None]  # figure -> rank correlation over candidates
    calibration: Mapping[str, float | None]  # figure -> median ratio on the lfm2 genomes


@dataclass(frozen=True)
class Report:
    """Everything the report shows about one run."""

    run: str
    run_id: int
    status: str | None
    quant: str
    contexts: tuple[int, ...]
    screen_contexts: tuple[int, ...]
    confirm_contexts: tuple[int, ...]
    device_classes: tuple[str, ...]
    objectives: tuple[str, ...]
    budgets: tuple[tuple[str, str, float], ...]  # (metric, "≤" | "≥", limit)
    repetitions: int
    n_gen: int
    flash_attn: tuple[bool, ...]
    generations: int
    candidates: Mapping[str, CandidateView]
    front: tuple[str, ...]
    baselines: tuple[str, ...]
    comparisons: tuple[Comparison, ...]
    ties: tuple[Tie, ...]
    device_time: DeviceTime
    provenance: tuple[ProvenanceRow, ...]
    runtimes: tuple[str, ...]  # distinct llama.cpp builds and thread counts behind the figures
    notes: tuple[str, ...] = field(default=())
    # cross_runtime runs: the second runtime's figures against the first's
    runtime_agreement: RuntimeAgreement | None = None

    def comparison(self, candidate: str, baseline: str) -> Comparison | None:
        for c in self.comparisons:
            if c.candidate == candidate and c.baseline == baseline:
                return c
        return None

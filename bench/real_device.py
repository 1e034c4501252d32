"""Real measurements on this machine for ``bench/search_efficiency.py --device x86``.

One evaluation of a genome is what a search job does to it, on this host:

1. the genome's *deployment-scale* spec (``star.genome.scale_spec`` at ``DEFAULT_SCALE`` or the
   bench's ``--d-model/--vocab``), as ``SearchConfig.deploy_spec`` builds it for a run with a
   ``deploy_scale``;
2. ``star.nn.StarModel(spec, seed=EXPORT_SEED)`` random weights (latency and memory do not
   depend on weight values: DESIGN "Two scales") exported by ``star.export.export_gguf`` at
   Q4_0, as ``star.search.steps.Steps.export`` does;
3. measured by the x86 agent's runner, ``device_agents.x86.X86Runner(threads=THREADS).measure``
   (-> ``device_agents.llamacpp.run_local_bench`` with the pinned llama-bench of
   ``star.runtime.ensure_runtime()``): TTFT at ``context`` (``-p C -n 0``) and the peak RSS of
   that process, then decode ms/token at depth C (``-n N_GEN -d C``, recorded, not an
   objective); flash attention off, ``REPETITIONS`` repetitions, medians. Nothing is simulated.
   The agent's re-measurement of noisy contexts (``RemeasurePolicy``) is not applied: the
   spread is reported instead (median TTFT CV).

Constants (each a choice; the bench's command line overrides the scale and the context):

- ``DEFAULT_SCALE`` = d_model 256, vocabulary 4,096, the genome's own head width and expert
  count, context_length 4,096. Why: at width 256 an LFM2-350M-shaped genome is a ~19M-parameter,
  ~10 MiB Q4_0 file whose prefill of 2,048 tokens is a fraction of a second on 2 quiet cores, so
  one evaluation (export, then 2 x (load + warm-up + 2 repetitions)) takes a few seconds; and a
  global-attention layer's prefill work at 2K keys is ~0.4x its projections and FFN
  (2 C / 35 d for an LFM2 layer), about its share at the native width 1,024 at 8K, so the
  attention / short-conv / SSM trade-off that the search is about is visible in the measured
  TTFT. A smaller width (128) makes the fixed per-process costs dominate every figure; the head
  width stays the genome's (it is a gene: head count follows from it). context_length only has
  to hold C + N_GEN positions (``validate_model``); 4,096 does for the default C = 2,048;
- ``CONTEXT`` 2,048: the oracle mode's context, so the objective names and the budget's context
  are the same in both modes;
- ``REPETITIONS`` 2: timed repetitions per figure (llama-bench ``-r``), after its warm-up;
- ``N_GEN`` 16: the runner always runs the decode process as well; 16 tokens keep it short;
- ``THREADS`` 2: the cores of this machine;
- ``EXPORT_SEED`` 0: ``SearchConfig.export_seed``'s default;
- ``QUANT`` Q4_0: the oracle's quantisation (every tensor Q4_0, the tied embedding included);
- ``MAX_EXPORT_PARAMS`` 400M: a spec with more parameters is not exported here (its F32 model
  alone is over 1.6 GB on a shared 2-core box; a raw random vector at this scale reached 4.5B
  parameters and the kernel's OOM killer). It is reported as a failed measurement. The search
  bench never gets near it: a genome whose peak-RSS lower bound breaks the budget is not sent
  (``MeasuredFigures``), and the budget at the default scale is ~94 MiB, i.e. ~170M Q4_0
  parameters at most;
- ``QUIET_LOAD`` 1.0: the box counts as quiet when the 1-minute load average before the run is
  below 1 (if it measured anything) and its median just before the measurements used (cached
  ones included) is at most the CPU count + 1 (the bench's own export and llama-bench threads
  keep up to ~3 runnable on a quiet 2-core box).

Measurements are cached by the spec that is exported (sha256 of its JSON): two genome ids whose
deployment-scale specs are equal give the same file, hence one measurement. With a cache
directory they persist as JSON under a folder named by the setup's fingerprint (scale, context,
repetitions, threads, quantisation, llama.cpp commit and build flags, CPU model), so the methods
and seeds of several invocations reuse each other's runs. A measurement that failed is kept in
memory only (a timeout on a loaded box must not outlive the run).
"""

from __future__ import annotations

import json
import math
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from device_agents.protocol import RemeasurePolicy
from star.cost import Quant
from star.genome import ArchSpec, Genome, Scale, scale_spec
from star.genome.identity import content_hash

if TYPE_CHECKING:
    from device_agents.protocol import JobSpec
    from device_agents.schemas import BenchReport

DEFAULT_SCALE = Scale(d_model=256, vocab_size=4096, context_length=4096)
CONTEXT = 2048
REPETITIONS = 2
N_GEN = 16
THREADS = 2
EXPORT_SEED = 0
QUANT = Quant.Q4_0
MAX_EXPORT_PARAMS = 400_000_000
QUIET_LOAD = 1.0


def spec_key(spec: ArchSpec) -> str:
    """Identity of an exported spec: sha256 of its canonical JSON (enums by value)."""
    return content_hash(json.loads(json.dumps(asdict(spec), default=str)))


@dataclass(frozen=True)
class Figures:
    """One measurement of one exported spec.

    ``ttft_ms``/``peak_rss_mib`` are NaN when the measurement failed (``error`` says why) and
    ``peak_rss_mib`` is infinite when the context ran out of memory. ``export_s``/``measure_s``:
    wall seconds of the export and of the runner; ``cpu_s``: CPU seconds of the benchmark
    processes (user + system, from the children's rusage), which a loaded box inflates far less
    than wall time; ``load1``: the 1-minute load average just before the measurement."""

    ttft_ms: float
    peak_rss_mib: float
    decode_ms: float = math.nan
    ttft_cv: float = math.nan
    error: str | None = None
    export_s: float = 0.0
    measure_s: float = 0.0
    cpu_s: float = 0.0
    load1: float = math.nan

    @property
    def ok(self) -> bool:
        return self.error is None and math.isfinite(self.ttft_ms) and math.isfinite(
            self.peak_rss_mib)


def figures_from_report(report: BenchReport, context: int) -> Figures:
    """The figures at ``context`` of a runner's report (timings are filled in by the caller)."""
    for c in report.contexts:
        if c.context != context:
            continue
        if c.oom:
            return Figures(math.nan, math.inf, error=f"out of memory at {context} tokens")
        if c.error is not None or c.ttft_ms is None or c.peak_rss_bytes is None:
            return Figures(math.nan, math.nan, error=c.error or "incomplete measurement")
        ttft = c.ttft_ms
        return Figures(
            ttft_ms=ttft.median,
            peak_rss_mib=c.peak_rss_bytes / 2**20,
            decode_ms=c.decode_ms_per_token.median if c.decode_ms_per_token else math.nan,
            ttft_cv=ttft.stddev / ttft.median if ttft.median > 0 else math.nan,
        )
    return Figures(math.nan, math.nan, error=f"no measurement at {context} tokens")


@dataclass(frozen=True)
class LocalJob:
    """The fields of a leased ``JobSpec`` that ``X86Runner.measure`` reads; a local run has no
    lease and no artifact to fetch."""

    contexts: list[int]
    repetitions: int
    n_gen: int
    flash_attn: bool = False
    runtime: str = "llama.cpp"
    remeasure: RemeasurePolicy = field(default_factory=lambda: RemeasurePolicy(max_tries=1))


@dataclass
class Spent:
    """What the device did in this process (cache hits cost nothing)."""

    measured: int = 0
    failed: int = 0
    hits: int = 0
    export_s: float = 0.0
    measure_s: float = 0.0
    cpu_s: float = 0.0
    loads: list[float] = field(default_factory=list)


class X86Device:
    """This host as the search's device: ``measure(spec)`` exports and measures once per spec."""

    def __init__(self, *, scale: Scale = DEFAULT_SCALE, context: int = CONTEXT,
                 repetitions: int = REPETITIONS, n_gen: int = N_GEN, threads: int = THREADS,
                 cache_dir: Path | None = None) -> None:
        from device_agents.x86 import X86Runner
        from star.runtime import ensure_runtime

        if scale.context_length is not None and scale.context_length < context + n_gen:
            raise ValueError(f"scale context_length {scale.context_length} < context {context} "
                             f"+ {n_gen} generated tokens")
        self.scale = scale
        self.context = context
        self.job = LocalJob(contexts=[context], repetitions=repetitions, n_gen=n_gen)
        self.runtime = ensure_runtime()  # builds llama.cpp once per host (minutes)
        self.runner = X86Runner(llama_bench_path=self.runtime.llama_bench, threads=threads,
                                build_flags=self.runtime.build_flags, commit=self.runtime.commit)
        self.setup = {
            "scale": asdict(scale), "context": context, "repetitions": repetitions,
            "n_gen": n_gen, "threads": threads, "flash_attn": False, "quant": QUANT.value,
            "export_seed": EXPORT_SEED, "llama_cpp_commit": self.runtime.commit,
            "build_flags": list(self.runtime.build_flags), "cpu_model": self.runtime.cpu_model,
        }
        self.cache_dir = cache_dir / content_hash(self.setup)[:16] if cache_dir else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            (self.cache_dir / "setup.json").write_text(json.dumps(self.setup, indent=1))
        self.spent = Spent()
        self._memo: dict[str, Figures] = {}

    def deploy(self, genome: Genome) -> ArchSpec:
        """The spec that is exported and measured (``SearchConfig.deploy_spec`` at the scale)."""
        return scale_spec(genome.to_spec(), self.scale)

    def measure(self, spec: ArchSpec) -> Figures | None:
        """The figures of ``spec``, measured at most once; None when it does not export (it
        never reaches the device: free, as an export error is in a search)."""
        key = spec_key(spec)
        if key in self._memo:
            self.spent.hits += 1
            return self._memo[key]
        path = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if path is not None and path.exists():
            self.spent.hits += 1
            self._memo[key] = Figures(**json.loads(path.read_text()))
            return self._memo[key]
        got = self._run(spec, key)
        if got is None:
            return None
        self._memo[key] = got
        self.spent.measured += 1
        self.spent.failed += not got.ok
        self.spent.export_s += got.export_s
        self.spent.measure_s += got.measure_s
        self.spent.cpu_s += got.cpu_s
        self.spent.loads.append(got.load1)
        if path is not None and got.ok:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(got)))
            tmp.replace(path)
        return got

    def _run(self, spec: ArchSpec, key: str) -> Figures | None:
        import torch

        from device_agents.agent import JobBroken
        from star.cost import count_params
        from star.export import ExportError, UnsupportedGenome, export_gguf
        from star.nn import StarModel

        params = count_params(spec).stored
        if params > MAX_EXPORT_PARAMS:
            return Figures(math.nan, math.nan, error=f"{params / 1e6:,.0f}M parameters: not "
                           f"exported here (MAX_EXPORT_PARAMS {MAX_EXPORT_PARAMS / 1e6:,.0f}M)")
        with tempfile.TemporaryDirectory(prefix="star-effreal-") as tmp:
            t0 = time.perf_counter()
            try:
                model = StarModel(spec, device="cpu", dtype=torch.float32, seed=EXPORT_SEED)
                result = export_gguf(spec, model, Path(tmp) / f"{key[:16]}.gguf",
                                     quant=QUANT.value, name=key[:12])
                del model
            except (UnsupportedGenome, ExportError):
                return None
            export_s = time.perf_counter() - t0
            load1 = os.getloadavg()[0]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            try:
                report = self.runner.measure(result.path, cast("JobSpec", self.job),
                                             threading.Event())
                figures = figures_from_report(report, self.context)
            except JobBroken as exc:
                figures = Figures(math.nan, math.nan, error=str(exc))
            measure_s = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return Figures(**{**asdict(figures), "export_s": export_s, "measure_s": measure_s,
                          "cpu_s": cpu_s, "load1": load1})


class MeasuredFigures:
    """``Mode.figures`` of the search bench on this machine: (quality, TTFT ms, peak RSS MiB).

    TTFT and peak RSS are measured by ``device`` on the deployment-scale spec; quality is
    ``quality(spec, genome_id)`` (the bench's documented formula on the same spec). A spec whose
    peak-RSS lower bound (``rss_lower_bound``: weights + KV + state) already breaks
    ``budget_mib`` is not run: it cannot meet the budget whatever the runtime adds, so its RSS is
    reported as that bound and its TTFT as unknown (NaN): an evaluation spent (the method sent
    it to a device), infeasible by the bound, as the pre-screen's G would say. Only methods
    without the pre-screen (random, plain NSGA-II) send such genomes; measuring them would
    mean exporting models of up to billions of parameters at this scale. ``by_genome``: each
    measured genome's ``Figures``; ``over_budget``: the genome ids reported by their bound."""

    def __init__(self, device: X86Device, quality: Callable[[ArchSpec, str], float],
                 budget_mib: float) -> None:
        self.device = device
        self.quality = quality
        self.budget_mib = budget_mib
        self.by_genome: dict[str, Figures] = {}
        self.over_budget: set[str] = set()

    def __call__(self, spec: ArchSpec, genome_id: str) -> np.ndarray | None:
        from star.search.prescreen import rss_lower_bound

        quality = self.quality(spec, genome_id)
        bound = rss_lower_bound(spec, self.device.context, QUANT) / 2**20
        if bound > self.budget_mib:
            self.over_budget.add(genome_id)
            return np.array([quality, math.nan, bound])
        got = self.device.measure(spec)
        if got is None:
            return None
        self.by_genome[genome_id] = got
        return np.array([quality, got.ttft_ms, got.peak_rss_mib])

    def device_seconds(self, genome_ids: Sequence[str]) -> float:
        """Export + measurement seconds of these evaluations, as if each were measured for
        them alone (cached measurements included)."""
        return sum(self.by_genome[g].export_s + self.by_genome[g].measure_s
                   for g in genome_ids if g in self.by_genome)


def print_header(device: X86Device, reference: str, ref: np.ndarray, load: float) -> None:
    """What is measured, how, and the reference design's figures at the scale."""
    s, setup = device.scale, device.setup
    print("SEARCH EFFICIENCY on this machine: every evaluation is a REAL llama.cpp measurement "
          "(x86 runner, llama-bench\n"
          f"{device.runtime.commit}, {setup['threads']} threads, flash attention off, "
          f"{setup['repetitions']} repetitions, medians) of the genome exported at a "
          f"deployment scale\n(d_model {s.d_model}, vocab {s.vocab_size}, context_length "
          f"{s.context_length}, Q4_0, random weights). Quality is the oracle mode's documented "
          "formula\non the same spec (a stand-in, the same for every method): the devices are "
          "real, quality is not.")
    print(f"reference {reference} at the scale: quality {ref[0]:.3f}, TTFT {ref[1]:.1f} ms, "
          f"peak RSS {ref[2]:.1f} MiB; budget and HV bounds = the oracle's as multiples of its "
          "reference (scaled_bounds)")
    print(f"load average (1 min) before: {load:.2f} on {os.cpu_count()} CPUs\n")


def method_note(device: X86Device, figures: MeasuredFigures, ids: Sequence[Sequence[str]],
                measured_before: int, seconds_before: float) -> str:
    """A method's device time per seed (its evaluations as if measured for it alone), the
    evaluations reported by their lower bound, and what was newly measured while it ran."""
    over = [len(figures.over_budget & set(seed_ids)) for seed_ids in ids]
    return (f"; device s per seed (export + measure, as if alone) "
            f"{[round(figures.device_seconds(seed_ids)) for seed_ids in ids]}; over the budget "
            f"by the lower bound (not run) {over}; new measurements "
            f"{device.spent.measured - measured_before} "
            f"({device.spent.measure_s - seconds_before:.0f} s measuring)")


def print_summary(device: X86Device, load_before: float) -> None:
    """What the device did in this invocation, and whether the figures used came from a quiet
    box (cached figures carry the load average of when they were measured)."""
    sp = device.spent
    load_after = os.getloadavg()[0]
    used = [f.load1 for f in device._memo.values() if math.isfinite(f.load1)]
    during = float(np.median(used)) if used else math.nan
    cvs = [f.ttft_cv for f in device._memo.values() if f.ok and math.isfinite(f.ttft_cv)]
    quiet = during <= (os.cpu_count() or 1) + 1 and (sp.measured == 0 or load_before < QUIET_LOAD)
    print(f"\ndevice: {sp.measured} measurements made ({sp.failed} failed), {sp.hits} cache "
          f"hits; {sp.measure_s:.0f} s measuring + {sp.export_s:.0f} s exporting "
          f"({(sp.measure_s + sp.export_s) / max(sp.measured, 1):.1f} s per measurement); "
          f"benchmark CPU time {sp.cpu_s:.0f} s; median TTFT CV of the {len(cvs)} figures used "
          f"{np.median(cvs) if cvs else math.nan:.3f}")
    print(f"load average (1 min): before {load_before:.2f}, after {load_after:.2f}, median when "
          f"the {len(used)} figures used were measured {during:.2f}, on {os.cpu_count()} CPUs: "
          + ("QUIET box" if quiet else "LOADED box: timings include the contention (TTFT "
             "especially; peak RSS hardly)"))

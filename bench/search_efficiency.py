"""Search efficiency: hypervolume reached per device evaluation (run on demand, not a test).

    python bench/search_efficiency.py [--budget 200] [--seeds 5] [--population 16]
    python bench/search_efficiency.py --device x86 --cache DIR [--budget 100] [--seeds 5]

Compares, on the same evaluation budget and seeds:

(a) **ours**: NSGA-II with the lab's operators (seeded genome sampling, layer-wise crossover,
    hierarchical mutation), the runtime fit (every genome is fitted to a stock llama.cpp family
    before it is seen), analytic pre-screening (a genome whose peak-RSS *lower bound* already
    breaks the budget is rejected for free, as ``star.search.steps.Steps.screen`` does) and
    surrogate-assisted pre-selection (``OperatorSettings.surrogate``: ``oversample`` x the
    population of offspring per generation, the population's worth kept by an online ridge
    model fitted on the told F/G; ``star.search.surrogate``). Built by
    ``star.search.operators.build_nsga2``, exactly as ``SearchEngine`` builds it;
(a') **ours-nosurr**: the same without the surrogate (the behaviour before it existed);
(a'') **ours-noscreen**: (a) with every runnable candidate sent to the device (ablation; not run
    by default: the surrogate never predicts a peak RSS below its analytic lower bound, so it
    never picks what the pre-screen would reject, and a 10-seed run gave HV identical to (a));
(b) **random**: batches from the same initial sampler as (a) (seeds, seed mutants, random
    genomes fitted to the runtime), no evolution, no pre-screen;
(c) **plain NSGA-II**: pymoo's default integer operators on the raw 262-gene vector (random
    sampling, SBX + polynomial mutation with rounding), no pre-screen; each vector is repaired by
    the encoding and fitted to a runnable llama.cpp family only when it is evaluated (without that
    fit, uniformly random vectors essentially never export: a first run spent 0 evaluations in 50
    generations, HV 0).

THE "DEVICE" IS A SIMULATED ORACLE, NOT A DEVICE. To run in minutes, an evaluation is the
deterministic model below of a 2-core x86 laptop running llama.cpp (Q4_0 weights, F16 KV cache,
flash attention off, n_ctx = n_prompt = 2048, n_ubatch 512) plus a proxy training. It is built to
deviate from the analytic cost model (``star.cost``) the way devices do, in ways the search does
not see: the search only ever gets the oracle's figures for the genomes it evaluates, so a method
that predicts from the analytic model has to learn the deviation from those. Every constant:

``ttft_ms`` (prefill of 2048 tokens and the first token):
- ``PEAK_FLOPS`` 200 GFLOP/s, ``BANDWIDTH`` 20 GB/s: the nominal roofline (the analytic model's);
- ``EFFICIENCY``: fraction of peak that each kind of work reaches: dense matmuls (projections,
  FFNs; Q4_0 GEMM) 0.80; global attention (QK^T, softmax, V at 2K keys without flash attention:
  memory-bound on the score matrix) 0.30; sliding-window attention with a window below the
  context (masked tiles: part of the work is thrown away) 0.45; short conv (depthwise, gating:
  elementwise, memory-bound) 0.15; SSM scan (sequential over tokens) 0.10;
- the output head runs for the last prompt token only (the analytic FLOPs count it per token);
- ``UBATCH`` 512: the prompt runs in ceil(2048 / 512) = 4 passes; each pass streams the active
  weights (``BANDWIDTH``) overlapped with its compute (the larger counts), and pays
  ``LAUNCH_MS`` 0.12 ms per layer (graph nodes, thread barriers); ``FIXED_MS`` 5 ms per prompt
  (tokenization, graph build, sampling);
- multiplicative log-normal noise, sd ``NOISE["ttft"]`` 0.04 (run-to-run spread).

``peak_rss_mb`` (VmHWM):
- weights as stored (Q4_0, mmapped and all touched) + F16 KV cache of n_ctx = 2048 cells per
  attention layer (a sliding-window layer holds min(n_ctx, window + UBATCH) cells, not the
  analytic min(n_ctx, window)) + F32 recurrent state;
- compute buffer, sized by llama.cpp for the largest pass: F32 activations of UBATCH tokens,
  4 x d_model + 2 x the widest FFN each, plus, with any attention layer, the F32 score matrix of
  UBATCH queries x the KV cells x the most query heads (grows with n_ctx x heads, i.e. with
  n_ctx x d_model / head_dim), plus F32 logits of one token;
- ``RUNTIME_MIB`` 48 MiB (binary, libc, ggml thread pool);
- log-normal noise, sd ``NOISE["rss"]`` 0.02 (allocator, page granularity).

``quality`` = (1.69 + 406.4 * N^-0.34 + 0.25 * exp(-8 * a)) x log-normal noise of sd
``NOISE["quality"]`` 0.01 (the seed-to-seed spread of a short proxy training): a Chinchilla-style
loss in the non-embedding parameter count N plus a recall penalty that falls with the share
``a`` of layers with global attention (sliding-window attention counts one half).

Noise is drawn from a generator seeded by the genome id, so an oracle call is a pure function of
the genome (a repeated genome gets the same figures, every method sees the same truth).

Budget: ``peak_rss_mb <= 512``. An evaluation is counted only when a candidate would reach a
device: a genome the runtime cannot run fails at export (free for every method), a genome the
pre-screen rejects is free for (a); everything else costs one evaluation, a repeated genome none.
F and G are formed as ``star.search.evaluate`` forms them (G = [(rss - 512) / 512, not
evaluated]). HV: pymoo's indicator over the feasible evaluated points, objectives normalised by
fixed bounds (``IDEAL``/``NADIR``), reference point 1.1 in each; the table reports medians over
seeds.

``--device x86``: THE DEVICE IS THIS MACHINE. Every evaluation exports the genome at a
deployment scale (``bench/real_device.py``: d_model 256, vocabulary 4,096 by default, Q4_0,
random weights) and measures TTFT and peak RSS at ``--context`` (2,048) through the x86 agent's
runner (pinned llama-bench, 2 threads, flash attention off, 2 repetitions); nothing of the
oracle's device model is used. Quality stays the formula above, computed on the same
deployment-scale spec (so the d_model gene, which the scale overrides, buys nothing): the
device figures are real, quality is the same stand-in for every method. Everything the search
sees is at that scale: the runtime fit, the pre-screen's lower bound, the surrogate's analytic
features (``deploy=``). The budget and the HV bounds follow ``scaled_bounds`` (the oracle's, as
multiples of its reference design, applied to the reference measured at the scale before any
search). A genome whose peak-RSS lower bound breaks the budget is not run for the methods
without the pre-screen: it costs them the evaluation, its G is that bound
(``real_device.MeasuredFigures``). Measurements are cached by exported spec, so every method
and seed sees the same figures for a genome (and, with ``--cache``, across invocations). The
output adds device time (per method as if measured alone, and what this invocation measured),
the TTFT spread, and the load average before, during and after: TTFT measured on a loaded box
includes the contention.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem
from pymoo.indicators.hv import HV

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.real_device import (  # noqa: E402
    DEFAULT_SCALE,
    N_GEN,
    MeasuredFigures,
    X86Device,
    method_note,
    print_header,
    print_summary,
)
from star.cost import Quant, count_params  # noqa: E402
from star.cost.flops import matmul_params_per_token  # noqa: E402
from star.cost.memory import state_bytes, weight_bytes  # noqa: E402
from star.cost.roofline import active_weight_bytes  # noqa: E402
from star.genome import Genome, load_genome, repair  # noqa: E402
from star.genome.encoding import LOWER, UPPER, VECTOR_LENGTH  # noqa: E402
from star.genome.spec import (  # noqa: E402
    ArchSpec,
    AttentionSpec,
    FFNSpec,
    MoESpec,
    ShortConvSpec,
    SSMSpec,
    TokenMixer,
)
from star.search.config import OperatorSettings  # noqa: E402
from star.search.evaluate import MISSING  # noqa: E402
from star.search.objectives import MetricKey, parse_metric  # noqa: E402
from star.search.operators import (  # noqa: E402
    Constraint,
    GenomeSampling,
    build_nsga2,
    genome_key,
)
from star.search.prescreen import check_runtime, rss_lower_bound  # noqa: E402
from star.search.runtime_fit import make_constraint  # noqa: E402
from star.search.surrogate import Surrogate  # noqa: E402

CONTEXT = 2048
QUANT = Quant.Q4_0
BUDGET_MB = 512.0
OBJECTIVES = ("quality", f"ttft_ms@{CONTEXT}/x86", f"peak_rss_mb@{CONTEXT}/x86")
BUDGETS = [(parse_metric(f"peak_rss_mb@{CONTEXT}/x86"), BUDGET_MB)]
IDEAL = np.array([1.9, 0.0, 0.0])  # fixed normalisation (quality loss, ms, MiB)
NADIR = np.array([3.0, 20000.0, BUDGET_MB])
REF = np.full(3, 1.1)
UNMEASURED = (np.full(3, MISSING), [0.0, 1.0])  # F, G of a candidate that never ran
SEED_GENOMES = ("lfm2-350m.yaml", "lfm2-350m-swa.yaml")

# ---- the oracle (every constant is documented in the module docstring) ----------------------
PEAK_FLOPS = 200e9
BANDWIDTH = 20e9
EFFICIENCY = {"matmul": 0.80, "attention": 0.30, "swa": 0.45, "shortconv": 0.15, "ssm": 0.10}
UBATCH = 512
LAUNCH_MS = 0.12
FIXED_MS = 5.0
RUNTIME_MIB = 48.0
NOISE = {"quality": 0.01, "ttft": 0.04, "rss": 0.02}


def _visible(context: int, window: int) -> float:
    """Keys summed over the prompt's positions (causal; a window caps each position's keys)."""
    if not window or window >= context:
        return context * (context + 1) / 2
    return window * (window + 1) / 2 + (context - window) * window


def _ttft_ms(spec: ArchSpec) -> float:
    head = spec.vocab_size * spec.d_model  # the output head: the last prompt token only
    seconds = 2 * (matmul_params_per_token(spec) - head) * CONTEXT / (
        EFFICIENCY["matmul"] * PEAK_FLOPS)
    seconds += 2 * head / (EFFICIENCY["matmul"] * PEAK_FLOPS)
    d = spec.d_model
    for layer in spec.layers:
        m = layer.mixer
        if isinstance(m, AttentionSpec):
            windowed = bool(m.window) and m.window < CONTEXT
            flops = 4 * m.n_heads * m.head_dim * _visible(CONTEXT, m.window)
            seconds += flops / (EFFICIENCY["swa" if windowed else "attention"] * PEAK_FLOPS)
        elif isinstance(m, ShortConvSpec):
            seconds += CONTEXT * (2 * m.kernel * d + 2 * d) / (
                EFFICIENCY["shortconv"] * PEAK_FLOPS)
        elif isinstance(m, SSMSpec):
            seconds += CONTEXT * (2 * m.conv_kernel * m.conv_dim
                                  + 5 * m.d_inner * m.state) / (EFFICIENCY["ssm"] * PEAK_FLOPS)
    passes = math.ceil(CONTEXT / UBATCH)
    stream = passes * active_weight_bytes(spec, QUANT) / BANDWIDTH
    return max(seconds, stream) * 1e3 + passes * spec.n_layers * LAUNCH_MS + FIXED_MS


def _rss_mib(spec: ArchSpec) -> float:
    kv, cells, heads = 0.0, 0, 0
    widest = 0
    for layer in spec.layers:
        m, c = layer.mixer, layer.channel
        if isinstance(m, AttentionSpec):
            n = min(CONTEXT, m.window + UBATCH) if m.window else CONTEXT
            kv += 2 * m.n_kv_heads * m.head_dim * 2 * n  # F16 K and V
            cells, heads = max(cells, n), max(heads, m.n_heads)
        if isinstance(c, FFNSpec):
            widest = max(widest, c.ffn_dim)
        elif isinstance(c, MoESpec):
            widest = max(widest, c.expert_dim * c.top_k)
    compute = 4 * UBATCH * (4 * spec.d_model + 2 * widest) + 4 * UBATCH * cells * heads
    compute += 4 * spec.vocab_size
    total = weight_bytes(spec, QUANT) + kv + state_bytes(spec) + compute
    return total / 2**20 + RUNTIME_MIB


def _quality(spec: ArchSpec) -> float:
    n = max(count_params(spec).non_embedding, 1)
    share = sum(1.0 if layer.mixer.kind == TokenMixer.ATTENTION else
                0.5 if layer.mixer.kind == TokenMixer.SWA else 0.0
                for layer in spec.layers) / max(spec.n_layers, 1)
    return 1.69 + 406.4 * n ** -0.34 + 0.25 * math.exp(-8.0 * share)


def oracle(spec: ArchSpec, genome_id: str) -> np.ndarray:
    """The documented stand-in for a device measurement + proxy training: (quality, TTFT ms,
    peak RSS MiB), with noise seeded by the genome id (a pure function of the genome)."""
    z = np.random.default_rng(int(genome_id[:16], 16)).standard_normal(3)
    sd = np.array([NOISE["quality"], NOISE["ttft"], NOISE["rss"]])
    return np.array([_quality(spec), _ttft_ms(spec), _rss_mib(spec)]) * np.exp(sd * z)


@dataclass(frozen=True)
class Mode:
    """What an evaluation is: the spec that is measured, its figures, the budget, the HV bounds.

    ``figures(spec, genome_id)`` gives (quality, TTFT ms, peak RSS MiB) of a runnable spec, None
    when it never reaches a device (it failed to export: free), NaN device figures when the
    device failed (an evaluation spent, infeasible), an infinite peak RSS when it ran out of
    memory (the same)."""

    deploy: Callable[[Genome], ArchSpec]
    figures: Callable[[ArchSpec, str], np.ndarray | None]
    budget_mb: float = BUDGET_MB
    ideal: np.ndarray = field(default_factory=lambda: IDEAL)
    nadir: np.ndarray = field(default_factory=lambda: NADIR)
    context: int = CONTEXT

    @property
    def objectives(self) -> tuple[str, ...]:
        return ("quality", f"ttft_ms@{self.context}/x86", f"peak_rss_mb@{self.context}/x86")

    @property
    def budgets(self) -> list[tuple[MetricKey, float]]:
        return [(parse_metric(self.objectives[2]), self.budget_mb)]


ORACLE = Mode(deploy=lambda g: g.to_spec(), figures=oracle)


class Ledger:
    """Device evaluations in the order they happen, a repeated genome counted once."""

    def __init__(self, budget: int, mode: Mode = ORACLE) -> None:
        self.budget = budget
        self.mode = mode
        self.seen: dict[str, tuple[np.ndarray, list[float]]] = {}
        self.points: list[np.ndarray] = []  # F of each evaluation, in order
        self.feasible: list[bool] = []
        self.ids: list[str] = []  # genome id of each evaluation, in order

    @property
    def spent(self) -> int:
        return len(self.points)

    def evaluate(self, vec: tuple[int, ...], *, prescreen: bool) -> tuple[np.ndarray, list[float]]:
        """(F, G) of one genome as ``star.search.evaluate`` forms them."""
        key = genome_key(vec)
        if key in self.seen:
            return self.seen[key]
        mode = self.mode
        spec = mode.deploy(Genome(vec))
        if not check_runtime(spec).ok:  # fails at export: never reaches a device
            self.seen[key] = UNMEASURED
            return UNMEASURED
        if prescreen:
            bound = rss_lower_bound(spec, mode.context, QUANT) / 2**20
            if bound > mode.budget_mb:  # rejected analytically: free
                self.seen[key] = (np.full(3, MISSING),
                                  [(bound - mode.budget_mb) / mode.budget_mb, 1.0])
                return self.seen[key]
        if self.spent >= self.budget:
            return UNMEASURED
        f = mode.figures(spec, key)
        if f is None:  # the export failed: never reaches a device
            self.seen[key] = UNMEASURED
            return UNMEASURED
        if np.isfinite(f).all():
            self.seen[key] = (f, [(f[2] - mode.budget_mb) / mode.budget_mb, 0.0])
        else:  # spent, not evaluated: the device failed (NaN), ran out of memory (RSS inf),
            # or only a lower bound of the RSS is known (RSS finite): G as star.search.evaluate
            rss = MISSING if np.isinf(f[2]) else 0.0 if np.isnan(f[2]) else (
                (f[2] - mode.budget_mb) / mode.budget_mb)
            self.seen[key] = (np.full(3, MISSING), [rss, 1.0])
        self.points.append(f)
        self.feasible.append(bool(np.isfinite(f).all() and f[2] <= mode.budget_mb))
        self.ids.append(key)
        return self.seen[key]

    def hv_at(self, n: int) -> float:
        pts = [p for p, ok in zip(self.points[:n], self.feasible[:n], strict=True) if ok]
        if not pts:
            return 0.0
        norm = (np.array(pts) - self.mode.ideal) / (self.mode.nadir - self.mode.ideal)
        return float(HV(ref_point=REF)(norm))


def _problem() -> Problem:
    return Problem(n_var=VECTOR_LENGTH, n_obj=3, n_ieq_constr=len(BUDGETS) + 1,
                   xl=np.array(LOWER), xu=np.array(UPPER), vtype=int)


def _drive(algorithm: NSGA2, ledger: Ledger, *, prescreen: bool, seed: int,
           fit: Constraint | None) -> None:
    """ask / evaluate / tell until the budget is spent (or 50 generations spend nothing).
    ``fit``: plain NSGA-II's raw vectors are repaired and fitted to a runnable llama.cpp family
    when they are evaluated; ours' operators return fitted, canonical vectors already."""
    from pymoo.core.evaluator import Evaluator
    from pymoo.problems.static import StaticProblem

    algorithm.setup(_problem(), termination=("n_gen", 10_000), seed=seed, verbose=False)
    stall = 0
    while ledger.spent < ledger.budget and stall < 50:
        before = ledger.spent
        pop = algorithm.ask()
        F, G = [], []
        for x in pop.get("X"):
            vec = tuple(int(v) for v in x)
            if fit is not None:
                fitted = fit(repair(vec))
                if fitted is None:  # nothing runnable near it: fails at export, free
                    F.append(UNMEASURED[0])
                    G.append(UNMEASURED[1])
                    continue
                vec = fitted
            f, g = ledger.evaluate(vec, prescreen=prescreen)
            F.append(f)
            G.append(g)
        # as SearchEngine._tell: the figures reach pymoo through a StaticProblem
        Evaluator().eval(StaticProblem(algorithm.problem, F=np.array(F, dtype=float),
                                       G=np.array(G, dtype=float)), pop)
        algorithm.tell(infills=pop)
        stall = stall + 1 if ledger.spent == before else 0


def _genomes() -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    base = load_genome(ROOT / "genomes" / "lfm2-350m.yaml").genes
    return base, [load_genome(ROOT / "genomes" / n).genes for n in SEED_GENOMES]


def run_ours(ledger: Ledger, seed: int, pop: int, *, prescreen: bool = True,
             surrogate: bool = True, **settings: object) -> None:
    base, seeds = _genomes()
    mode = ledger.mode
    ops = OperatorSettings(surrogate=surrogate, **settings)  # type: ignore[arg-type]
    model = Surrogate([parse_metric(n) for n in mode.objectives], mode.budgets, mode.deploy,
                      QUANT)
    algorithm = build_nsga2(pop_size=pop, constraint=make_constraint(mode.deploy),
                            settings=ops, seeds=seeds, base=base, surrogate=model)
    _drive(algorithm, ledger, prescreen=prescreen, seed=seed, fit=None)


def run_random(ledger: Ledger, seed: int, pop: int) -> None:
    base, seeds = _genomes()
    sampler = GenomeSampling(seeds=seeds, constraint=make_constraint(ledger.mode.deploy),
                             base=base)
    rng = np.random.default_rng(seed)
    problem = _problem()
    stall = 0
    while ledger.spent < ledger.budget and stall < 50:
        before = ledger.spent
        # every batch: the seeds (evaluated once, then free as repeats), seed mutants, random
        for x in sampler._do(problem, pop, random_state=rng):
            ledger.evaluate(tuple(int(v) for v in x), prescreen=False)
        stall = stall + 1 if ledger.spent == before else 0


def run_plain(ledger: Ledger, seed: int, pop: int) -> None:
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling

    algorithm = NSGA2(
        pop_size=pop,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    _drive(algorithm, ledger, prescreen=False, seed=seed, fit=make_constraint(ledger.mode.deploy))


METHODS: dict[str, Callable[..., None]] = {
    "ours": run_ours,
    "ours-nosurr": lambda ledger, seed, pop: run_ours(ledger, seed, pop, surrogate=False),
    "ours-noscreen": lambda ledger, seed, pop: run_ours(ledger, seed, pop, prescreen=False),
    "random": run_random,
    "plain-nsga2": run_plain,
}
RATIOS = (("ours", "random"), ("ours", "ours-nosurr"), ("ours-nosurr", "random"),
          ("ours", "plain-nsga2"), ("ours", "ours-noscreen"))


# ---- --device x86: real measurements (bench/real_device.py) --------------------------------


def _noisy_quality(spec: ArchSpec, genome_id: str) -> float:
    """The oracle's quality with the oracle's noise draw (seeded by the genome id)."""
    z = np.random.default_rng(int(genome_id[:16], 16)).standard_normal(3)
    return _quality(spec) * math.exp(NOISE["quality"] * z[0])


def scaled_bounds(at_scale: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(budget MiB, IDEAL, NADIR) for a scale whose reference design has ``at_scale`` =
    (quality, TTFT ms, peak RSS MiB).

    The rule: the oracle mode's ``BUDGET_MB``, ``IDEAL`` and ``NADIR`` are multiples of its
    reference design's noise-free figures (the first seed, LFM2-350M: quality 2.243, TTFT
    8,234 ms, peak RSS 352.7 MiB; so the budget is 1.45x its RSS, the TTFT nadir 2.43x its
    TTFT, quality 0.85x-1.34x its loss); the same multiples apply to the same design at the
    scale. Nothing is read from a search's results."""
    native = load_genome(ROOT / "genomes" / SEED_GENOMES[0]).to_spec()
    factor = at_scale / np.array([_quality(native), _ttft_ms(native), _rss_mib(native)])
    return BUDGET_MB * float(factor[2]), IDEAL * factor, NADIR * factor


def x86_mode(device: X86Device) -> tuple[Mode, MeasuredFigures, np.ndarray]:
    """The mode, its figures and the reference design's figures at the scale: its quality by
    the formula (noise-free), its TTFT and peak RSS measured here before any search
    (``scaled_bounds`` turns them into the budget and HV bounds). That one measurement is
    device time, and an evaluation only for a method that asks for the genome (from the
    cache)."""
    spec = device.deploy(load_genome(ROOT / "genomes" / SEED_GENOMES[0]))
    got = device.measure(spec)
    if got is None or not got.ok:
        raise SystemExit(f"calibration: {SEED_GENOMES[0]} at the scale did not measure: "
                         f"{got.error if got else 'export failed'}")
    at_scale = np.array([_quality(spec), got.ttft_ms, got.peak_rss_mib])
    budget, ideal, nadir = scaled_bounds(at_scale)
    figures = MeasuredFigures(device, _noisy_quality, budget)
    mode = Mode(deploy=device.deploy, figures=figures, budget_mb=budget, ideal=ideal,
                nadir=nadir, context=device.context)
    return mode, figures, at_scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=200, help="device evaluations per search")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--methods", default=",".join(m for m in METHODS if m != "ours-noscreen"),
                    help="comma-separated subset of " + ", ".join(METHODS))
    ap.add_argument("--marks", default="",
                    help="comma-separated evaluation counts to report (default: 10, 25, 50, "
                         "100, 150, 200 up to the budget, and the budget)")
    ap.add_argument("--device", choices=("oracle", "x86"), default="oracle",
                    help="oracle: the documented simulation (default); x86: real llama.cpp "
                         "measurements on this machine (bench/real_device.py)")
    ap.add_argument("--d-model", type=int, default=DEFAULT_SCALE.d_model,
                    help="x86: deployment-scale width")
    ap.add_argument("--vocab", type=int, default=DEFAULT_SCALE.vocab_size,
                    help="x86: deployment-scale vocabulary")
    ap.add_argument("--context", type=int, default=CONTEXT,
                    help="x86: measured context (TTFT and peak RSS at it)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="x86: directory of cached measurements shared across invocations "
                         "(one folder per setup fingerprint; use a fresh one on a quiet box)")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    marks = sorted({b for b in (10, 25, 50, 100, 150, 200, args.budget) if b <= args.budget})
    if args.marks:
        marks = sorted({int(b) for b in args.marks.split(",") if 0 < int(b) <= args.budget})

    mode, device, figures, load_before = ORACLE, None, None, os.getloadavg()[0]
    if args.device == "x86":
        scale = replace(DEFAULT_SCALE, d_model=args.d_model, vocab_size=args.vocab,
                        context_length=max(DEFAULT_SCALE.context_length or 0,
                                           args.context + N_GEN))
        device = X86Device(scale=scale, context=args.context, cache_dir=args.cache)
        mode, figures, ref = x86_mode(device)
        print_header(device, SEED_GENOMES[0], ref, load_before)
    else:
        print("SEARCH EFFICIENCY on a simulated device (documented kernel efficiencies, "
              "overheads, compute buffers\nand noise that the analytic cost model does not "
              "know) + a documented quality formula: it measures\nhow efficiently each search "
              "spends device evaluations, NOT device truth.")
    scale = "native scale" if device is None else f"d_model {device.scale.d_model}"
    ideal, nadir = (mode.ideal, mode.nadir) if device is None else (
        np.round(mode.ideal, 3), np.round(mode.nadir, 3))
    print(f"objectives {mode.objectives}, Q4_0, {scale}; budget peak_rss_mb <= "
          f"{mode.budget_mb:g}; population {args.population}; seeds 0..{args.seeds - 1}; HV "
          f"reference {REF.tolist()} after normalising by IDEAL {ideal.tolist()} / NADIR "
          f"{nadir.tolist()}\n")
    hv: dict[str, np.ndarray] = {}
    for name in methods:
        rows = []
        t0 = time.perf_counter()
        ledgers = []
        new_before = device.spent.measured if device else 0
        seconds_before = device.spent.measure_s if device else 0.0
        for seed in range(args.seeds):
            ledger = Ledger(args.budget, mode)
            METHODS[name](ledger, seed, args.population)
            ledgers.append(ledger)
            rows.append([ledger.hv_at(min(b, ledger.spent)) for b in marks])
        hv[name] = np.array(rows)
        extra = (method_note(device, figures, [led.ids for led in ledgers], new_before,
                             seconds_before) if device and figures else "")
        print(f"  {name:14s} {time.perf_counter() - t0:6.1f} s, evaluations spent per seed "
              f"{[led.spent for led in ledgers]}{extra}", flush=True)
    print()
    ratios = [(a, b) for a, b in RATIOS if a in hv and b in hv]
    head = f"{'evaluations':>11s} | " + " | ".join(f"{n:>13s}" for n in methods)
    head += "".join(f" | {a}/{b}" for a, b in ratios)
    print(head)
    print("-" * len(head))
    med = {n: np.median(v, axis=0) for n, v in hv.items()}
    for i, b in enumerate(marks):
        line = f"{b:>11d} | " + " | ".join(f"{med[n][i]:13.4f}" for n in methods)
        for a, c in ratios:
            width = len(f"{a}/{c}")
            cell = f"{med[a][i] / med[c][i]:.2f}x" if med[c][i] > 0 else "inf"
            line += f" | {cell:>{width}s}"
        print(line)
    if "ours" in hv and "random" in hv:
        wins = (hv["ours"] > hv["random"]).sum(axis=0)
        print("\nseeds where ours > random, per mark: "
              + ", ".join(f"{b}: {w}/{args.seeds}" for b, w in zip(marks, wins, strict=True)))
    print("median hypervolume over seeds (higher is better); ratios are of medians.")
    if device is not None:
        print_summary(device, load_before)


if __name__ == "__main__":
    main()

"""Search efficiency: hypervolume reached per device evaluation (run on demand, not a test).

    python bench/search_efficiency.py [--budget 200] [--seeds 5] [--population 16]

Compares, on the same evaluation budget and seeds:

(a) **ours**: NSGA-II with the lab's operators (seeded genome sampling, layer-wise crossover,
    hierarchical mutation), the runtime fit (every genome is fitted to a stock llama.cpp family
    before it is seen) and analytic pre-screening (a genome whose peak-RSS *lower bound* already
    breaks the budget is rejected for free, as ``star.search.steps.Steps.screen`` does);
(a') **ours, no pre-screen**: the same, every runnable candidate is sent to the device (ablation);
(b) **random**: batches from the same initial sampler as (a) (seeds, seed mutants, random
    genomes fitted to the runtime), no evolution, no pre-screen;
(c) **plain NSGA-II**: pymoo's default integer operators on the raw 262-gene vector (random
    sampling, SBX + polynomial mutation with rounding), no pre-screen; each vector is repaired by
    the encoding and fitted to a runnable llama.cpp family only when it is evaluated (without that
    fit, uniformly random vectors essentially never export: a first run spent 0 evaluations in 50
    generations, HV 0).

THE "DEVICE" IS AN ANALYTIC ORACLE, NOT A DEVICE. To run in minutes, an evaluation is the
deterministic model below at native scale (Q4_0, context 2048); it measures how efficiently each
search spends evaluations, not how well any model runs on real hardware:

- ``ttft_ms``    = roofline TTFT of ``star.cost`` (prefill FLOPs / 200 GFLOP/s vs. active weight
  bytes / 20 GB/s, the larger), a 2-core x86 laptop;
- ``peak_rss_mb``= 1.10 x (weights + KV cache + recurrent state at 2048 tokens) + 64 MiB runtime;
- ``quality``    = 1.69 + 406.4 * N^-0.34 + 0.25 * exp(-8 * a), a Chinchilla-style loss in the
  non-embedding parameter count N plus a recall penalty that falls with the share ``a`` of
  layers with global attention (sliding-window attention counts one half): pure convolution /
  SSM stacks pay it, a few attention layers remove most of it.

Budget: ``peak_rss_mb <= 512``. An evaluation is counted only when a candidate would reach a
device: a genome the runtime cannot run fails at export (free for every method), a genome the
pre-screen rejects is free for (a); everything else costs one evaluation, a repeated genome none.
HV: pymoo's indicator over the feasible evaluated points, objectives normalised by fixed bounds
(``IDEAL``/``NADIR``), reference point 1.1 in each; the table reports medians over seeds.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem
from pymoo.indicators.hv import HV

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from star.cost import Quant, count_params  # noqa: E402
from star.cost.memory import kv_bytes, state_bytes, weight_bytes  # noqa: E402
from star.cost.roofline import DeviceRoofline, ttft_seconds  # noqa: E402
from star.genome import Genome, load_genome, repair  # noqa: E402
from star.genome.encoding import LOWER, UPPER, VECTOR_LENGTH  # noqa: E402
from star.genome.spec import ArchSpec, TokenMixer  # noqa: E402
from star.search.operators import (  # noqa: E402
    GenomeDuplicateElimination,
    GenomeRepair,
    GenomeSampling,
    HierarchicalMutation,
    LayerwiseCrossover,
    genome_key,
)
from star.search.prescreen import check_runtime, rss_lower_bound  # noqa: E402
from star.search.runtime_fit import make_constraint  # noqa: E402

CONTEXT = 2048
QUANT = Quant.Q4_0
BUDGET_MB = 512.0
DEVICE = DeviceRoofline("x86 laptop, 2 cores (oracle)", bandwidth=20e9, flops=200e9)
OBJECTIVES = ("quality", "ttft_ms", "peak_rss_mb")
IDEAL = np.array([1.9, 0.0, 0.0])  # fixed normalisation (quality loss, ms, MiB)
NADIR = np.array([3.0, 20000.0, BUDGET_MB])
REF = np.full(3, 1.1)
PENALTY = np.array([10.0, 1e7, 1e7])  # F of a candidate never measured (infeasible anyway)
SEED_GENOMES = ("lfm2-350m.yaml", "lfm2-350m-swa.yaml")


def oracle(spec: ArchSpec) -> np.ndarray:
    """The documented deterministic stand-in for a device measurement + proxy training."""
    n = max(count_params(spec).non_embedding, 1)
    share = sum(1.0 if layer.mixer.kind == TokenMixer.ATTENTION else
                0.5 if layer.mixer.kind == TokenMixer.SWA else 0.0
                for layer in spec.layers) / max(spec.n_layers, 1)
    quality = 1.69 + 406.4 * n ** -0.34 + 0.25 * math.exp(-8.0 * share)
    ttft = ttft_seconds(spec, CONTEXT, DEVICE, QUANT) * 1e3
    rss = 1.10 * (weight_bytes(spec, QUANT) + kv_bytes(spec, CONTEXT) + state_bytes(spec))
    return np.array([quality, ttft, rss / 2**20 + 64.0])


class Ledger:
    """Device evaluations in the order they happen, a repeated genome counted once."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.seen: dict[str, np.ndarray | None] = {}
        self.points: list[np.ndarray] = []  # F of each evaluation, in order
        self.feasible: list[bool] = []

    @property
    def spent(self) -> int:
        return len(self.points)

    def evaluate(self, vec: tuple[int, ...], *, prescreen: bool) -> tuple[np.ndarray, float]:
        """(F, G) of one genome; G > 0 is a broken budget (or a genome that cannot run)."""
        key = genome_key(vec)
        spec = Genome(vec).to_spec()
        if key in self.seen:
            f = self.seen[key]
            return (PENALTY, 1e6) if f is None else (f, f[2] - BUDGET_MB)
        if not check_runtime(spec).ok:  # fails at export: never reaches a device
            self.seen[key] = None
            return PENALTY, 1e6
        if prescreen:
            bound = rss_lower_bound(spec, CONTEXT, QUANT) / 2**20
            if bound > BUDGET_MB:  # rejected analytically: free
                self.seen[key] = None
                return PENALTY, bound - BUDGET_MB
        if self.spent >= self.budget:
            return PENALTY, 1e6
        f = oracle(spec)
        self.seen[key] = f
        self.points.append(f)
        self.feasible.append(bool(f[2] <= BUDGET_MB))
        return f, f[2] - BUDGET_MB

    def hv_at(self, n: int) -> float:
        pts = [p for p, ok in zip(self.points[:n], self.feasible[:n], strict=True) if ok]
        if not pts:
            return 0.0
        norm = (np.array(pts) - IDEAL) / (NADIR - IDEAL)
        return float(HV(ref_point=REF)(norm))


_FIT = make_constraint(lambda g: g.to_spec())


def _problem() -> Problem:
    return Problem(n_var=VECTOR_LENGTH, n_obj=3, n_ieq_constr=1, xl=np.array(LOWER),
                   xu=np.array(UPPER), vtype=int)


def _drive(algorithm: NSGA2, ledger: Ledger, *, prescreen: bool, seed: int,
           canonical: bool) -> None:
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
            if not canonical:  # plain NSGA-II: the raw vector, fitted to a runnable family
                fitted = _FIT(repair(vec))
                if fitted is None:  # nothing runnable near it: fails at export, free
                    F.append(PENALTY)
                    G.append([1e6])
                    continue
                vec = fitted
            f, g = ledger.evaluate(vec, prescreen=prescreen)
            F.append(f)
            G.append([g])
        # as SearchEngine._tell: the figures reach pymoo through a StaticProblem
        Evaluator().eval(StaticProblem(algorithm.problem, F=np.array(F, dtype=float),
                                       G=np.array(G, dtype=float)), pop)
        algorithm.tell(infills=pop)
        stall = stall + 1 if ledger.spent == before else 0


def run_ours(ledger: Ledger, seed: int, pop: int, *, prescreen: bool = True) -> None:
    base = load_genome(ROOT / "genomes" / "lfm2-350m.yaml").genes
    seeds = [load_genome(ROOT / "genomes" / n).genes for n in SEED_GENOMES]
    constraint = make_constraint(lambda g: g.to_spec())
    algorithm = NSGA2(
        pop_size=pop,
        sampling=GenomeSampling(seeds=seeds, constraint=constraint, base=base),
        crossover=LayerwiseCrossover(constraint=constraint),
        mutation=HierarchicalMutation(constraint=constraint),
        repair=GenomeRepair(constraint=constraint),
        eliminate_duplicates=GenomeDuplicateElimination(),
    )
    _drive(algorithm, ledger, prescreen=prescreen, seed=seed, canonical=True)


def run_random(ledger: Ledger, seed: int, pop: int) -> None:
    base = load_genome(ROOT / "genomes" / "lfm2-350m.yaml").genes
    seeds = [load_genome(ROOT / "genomes" / n).genes for n in SEED_GENOMES]
    sampler = GenomeSampling(seeds=seeds, constraint=make_constraint(lambda g: g.to_spec()),
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
    _drive(algorithm, ledger, prescreen=False, seed=seed, canonical=False)


METHODS: dict[str, Callable[..., None]] = {
    "ours": run_ours,
    "ours-noscreen": lambda ledger, seed, pop: run_ours(ledger, seed, pop, prescreen=False),
    "random": run_random,
    "plain-nsga2": run_plain,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=200, help="device evaluations per search")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--population", type=int, default=16)
    args = ap.parse_args()
    marks = sorted({b for b in (10, 25, 50, 100, 150, 200, args.budget) if b <= args.budget})

    print("SEARCH EFFICIENCY on an analytic oracle (star.cost roofline + a documented quality "
          "formula):\nit measures how efficiently each search spends device evaluations, NOT "
          "device truth.")
    print(f"objectives {OBJECTIVES} at {CONTEXT} tokens, Q4_0, native scale; budget peak_rss_mb "
          f"<= {BUDGET_MB:g}; population {args.population}; seeds 0..{args.seeds - 1}; HV "
          f"reference {REF.tolist()} after normalising by IDEAL {IDEAL.tolist()} / NADIR "
          f"{NADIR.tolist()}\n")
    hv: dict[str, np.ndarray] = {}
    for name, fn in METHODS.items():
        rows = []
        t0 = time.perf_counter()
        spent = []
        for seed in range(args.seeds):
            ledger = Ledger(args.budget)
            fn(ledger, seed, args.population)
            spent.append(ledger.spent)
            rows.append([ledger.hv_at(b) if ledger.spent >= b else
                         ledger.hv_at(ledger.spent) for b in marks])
        hv[name] = np.array(rows)
        print(f"  {name:14s} {time.perf_counter() - t0:6.1f} s, evaluations spent per seed "
              f"{spent}", flush=True)
    print()
    head = f"{'evaluations':>11s} | " + " | ".join(f"{n:>13s}" for n in METHODS)
    head += " | ours/random | ours/plain | ours/noscreen"
    print(head)
    print("-" * len(head))
    med = {n: np.median(v, axis=0) for n, v in hv.items()}
    for i, b in enumerate(marks):
        def ratio(a: float, c: float) -> str:
            return f"{a / c:11.2f}x" if c > 0 else "        inf"
        print(f"{b:>11d} | " + " | ".join(f"{med[n][i]:13.4f}" for n in METHODS)
              + f" | {ratio(med['ours'][i], med['random'][i])} | "
              f"{ratio(med['ours'][i], med['plain-nsga2'][i]):>10s} | "
              f"{ratio(med['ours'][i], med['ours-noscreen'][i]):>12s}")
    print("\nmedian hypervolume over seeds (higher is better); ratios are of medians.")


if __name__ == "__main__":
    main()

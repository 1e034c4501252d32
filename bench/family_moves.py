"""How often genomes export, and how often a mutation changes llama.cpp family (run on demand).

    PYTHONPATH=$PWD python bench/family_moves.py [--n 400]

For random genomes (``star genome random``: ``random_genome`` with default model genes) and for
single mutants (``mutate``, random resolution) of one seed per family (LFM2-350M, a qwen3-like
Llama-3.2-1B with QK-norm, Llama-3.2-1B, the granitehybrid reference, Mamba-2 370M) it prints:

- **raw**: share that ``check_exportable`` accepts as drawn (what ``star genome random/mutate``
  gave before they fitted by default);
- **fit**: share accepted after ``fit_runtime`` (at the genome's own scale);
- **fit@d256**: share of the search constraint's output (``make_constraint`` at a deployment
  scale of d_model 256, vocabulary 4096) that exports at that scale, i.e. not dropped;
- **moved arch / moved family**: share of fitted mutants whose llama.cpp arch (family: conv =
  lfm2/lfm2moe, attention = qwen3/llama, ssm = mamba2, ssm-hybrid = granitehybrid/nemotron_h)
  differs from the parent's; **undone**: share fitted back to the parent itself.

Only public functions that existed before cross-family fitting are used, so the same script
measures an older checkout (``git archive <commit> star | tar -x -C DIR``; PYTHONPATH=DIR).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from star.export import UnsupportedGenome, check_exportable
from star.genome import Genome, Scale, load_genome, mutate, random_genome, scale_spec
from star.search.runtime_fit import fit_runtime, make_constraint

ROOT = Path(__file__).resolve().parent.parent


DEPLOY = Scale(d_model=256, vocab_size=4096)
FAMILY = {"lfm2": "conv", "lfm2moe": "conv", "qwen3": "attention", "llama": "attention",
          "mamba2": "ssm", "granitehybrid": "ssm-hybrid", "nemotron_h": "ssm-hybrid"}


def arch(genes: tuple[int, ...], scale: Scale | None = None) -> str | None:
    spec = Genome(genes).to_spec()
    try:
        return check_exportable(scale_spec(spec, scale) if scale else spec).name
    except UnsupportedGenome:
        return None


def qwen3_like() -> tuple[int, ...]:
    data = load_genome(ROOT / "genomes/llama-3.2-1b.yaml").data
    for op in data.operators:
        op.featurizer["qk_norm"] = 1
    return Genome.from_vector(data.encode()).genes


def measure(n: int) -> None:
    constraint = make_constraint(lambda g: scale_spec(g.to_spec(), DEPLOY))
    t0 = time.perf_counter()
    raw = fit = dep = 0
    archs: dict[str, int] = {}
    for s in range(n):
        g = random_genome(np.random.default_rng(s))
        raw += arch(g) is not None
        f = fit_runtime(g)
        a = arch(f)
        fit += a is not None
        archs[str(a)] = archs.get(str(a), 0) + 1
        c = constraint(g)
        dep += c is not None and arch(c, DEPLOY) is not None
    print(f"random genomes (n={n}): raw {raw / n:.0%}, fit {fit / n:.0%}, "
          f"fit@d256 {dep / n:.0%}; archs after fit {dict(sorted(archs.items()))}")
    seeds = {
        "lfm2-350m": load_genome(ROOT / "genomes/lfm2-350m.yaml").genes,
        "qwen3-like": qwen3_like(),
        "llama-3.2-1b": load_genome(ROOT / "genomes/llama-3.2-1b.yaml").genes,
        "hybrid-ssm-attn-300m": load_genome(ROOT / "genomes/hybrid-ssm-attn-300m.yaml").genes,
        "mamba2-370m": load_genome(ROOT / "genomes/mamba2-370m.yaml").genes,
    }
    print(f"{'single mutants of':38s} {'raw':>5s} {'fit':>5s} {'fit@d256':>9s} "
          f"{'moved arch':>11s} {'moved family':>13s} {'undone':>7s}")
    for name, genes in seeds.items():
        a0 = arch(genes)
        rng = np.random.default_rng(0)
        raw = fit = dep = moved = fam = undone = 0
        for _ in range(n):
            m = mutate(genes, rng)
            raw += arch(m) is not None
            f = fit_runtime(m)
            a = arch(f)
            fit += a is not None
            moved += a is not None and a != a0
            fam += a is not None and FAMILY[a] != FAMILY[str(a0)]
            undone += f == genes
            c = constraint(m)
            dep += c is not None and arch(c, DEPLOY) is not None
        print(f"{name + ' (' + str(a0) + ')':38s} {raw / n:5.0%} {fit / n:5.0%} {dep / n:9.0%} "
              f"{moved / n:11.0%} {fam / n:13.0%} {undone / n:7.0%}")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="genomes per row")
    measure(parser.parse_args().n)

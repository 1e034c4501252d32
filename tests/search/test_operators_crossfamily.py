"""The pymoo operators with the search's constraint: offspring move between llama.cpp families and
always export, at the genome's own scale and at a realistic deployment scale."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings

from star.export import UnsupportedGenome, check_exportable
from star.genome import Genome, Scale, load_genome, scale_spec
from star.genome.encoding import GenomeData
from star.search.operators import HierarchicalMutation, LayerwiseCrossover
from star.search.runtime_fit import make_constraint
from tests.conftest import GENOMES
from tests.genome.strategies import any_vectors


def _qwen3_like() -> tuple[int, ...]:
    """Llama-3.2-1B with QK-norm: the qwen3 arch."""
    data = load_genome(GENOMES / "llama-3.2-1b.yaml").data
    for op in data.operators:
        op.featurizer["qk_norm"] = 1
    return Genome.from_vector(data.encode()).genes


SEEDS = {
    "lfm2": load_genome(GENOMES / "lfm2-350m.yaml").genes,
    "qwen3": _qwen3_like(),
    "llama": load_genome(GENOMES / "llama-3.2-1b.yaml").genes,
    "granitehybrid": load_genome(GENOMES / "hybrid-ssm-attn-300m.yaml").genes,
    "mamba2": load_genome(GENOMES / "mamba2-370m.yaml").genes,
}
FAMILY = {"lfm2": "conv", "lfm2moe": "conv", "qwen3": "attention", "llama": "attention",
          "mamba2": "ssm", "granitehybrid": "ssm-hybrid", "nemotron_h": "ssm-hybrid"}
SMALL = Scale(d_model=256, vocab_size=4096)  # a realistic search deployment scale
SCALES = {"native": None, "d256-v4096": SMALL}


def arch_at(row: np.ndarray | tuple[int, ...], scale: Scale | None) -> str | None:
    spec = Genome(tuple(int(x) for x in row)).to_spec()
    try:
        return check_exportable(scale_spec(spec, scale) if scale else spec).name
    except UnsupportedGenome:
        return None


def constraint_at(scale: Scale | None):  # noqa: ANN201 (a Constraint)
    return make_constraint(lambda g: scale_spec(g.to_spec(), scale) if scale else g.to_spec())


@pytest.mark.parametrize("scale_name", list(SCALES))
def test_mutation_offspring_export_and_some_move_family(scale_name: str) -> None:
    scale = SCALES[scale_name]
    for name, genes in SEEDS.items():
        assert arch_at(genes, scale) == name  # every seed exports at this scale
    parents = [name for name in SEEDS for _ in range(60)]
    X = np.array([SEEDS[name] for name in parents], dtype=np.int64)
    out = HierarchicalMutation(constraint_at(scale))._do(None, X,
                                                          random_state=np.random.default_rng(4))
    archs = [arch_at(row, scale) for row in out]
    assert None not in archs  # 300 of 300 offspring export
    changed = sum(tuple(o) != tuple(x) for o, x in zip(out, X, strict=True))
    moved_arch = Counter(p for p, a in zip(parents, archs, strict=True) if a != p)
    moved_family = sum(FAMILY[a] != FAMILY[p] for p, a in zip(parents, archs, strict=True)
                       if a is not None)
    print(f"\n[{scale_name}] {changed}/{len(X)} mutated, moved arch: {dict(moved_arch)} "
          f"({sum(moved_arch.values()) / len(X):.0%}), moved family: "
          f"{moved_family / len(X):.0%}")
    assert changed >= 0.95 * len(X)
    assert 0.02 < moved_family / len(X) < 0.4  # families are crossed, not scrambled
    assert len(moved_arch) >= 3  # from several seed families


@pytest.mark.parametrize("scale_name", list(SCALES))
def test_crossover_of_parents_from_two_families_gives_exportable_children(
        scale_name: str) -> None:
    scale = SCALES[scale_name]
    pairs = [("lfm2", "granitehybrid"), ("granitehybrid", "lfm2"), ("lfm2", "mamba2"),
             ("qwen3", "granitehybrid"), ("llama", "lfm2")]
    n = 20
    X = np.array([[SEEDS[a] for a, _ in pairs for _ in range(n)],
                  [SEEDS[b] for _, b in pairs for _ in range(n)]], dtype=np.int64)
    Y = LayerwiseCrossover(constraint_at(scale), prob=1.0)._do(
        None, X, random_state=np.random.default_rng(5))
    children: Counter[tuple[str, str, str]] = Counter()
    for k, (a, b) in enumerate(p for p in pairs for _ in range(n)):
        for row in (Y[0, k], Y[1, k]):
            arch = arch_at(row, scale)
            assert arch is not None
            children[(a, b, arch)] += 1
    # an lfm2 x granitehybrid crossover yields genomes of either family, each exportable
    lg = {arch for (a, b, arch) in children if {a, b} == {"lfm2", "granitehybrid"}}
    assert {"lfm2", "granitehybrid"} <= lg
    datas = [GenomeData.decode(tuple(int(x) for x in row)) for row in Y.reshape(-1, Y.shape[-1])]
    mixed = [d for d in datas if len({d.operators[k].mixer for k in d.layers}) >= 2]
    assert mixed  # children are hybrids, not copies of one parent


def test_same_seed_same_cross_family_offspring() -> None:
    X = np.array([SEEDS["lfm2"], SEEDS["mamba2"], SEEDS["granitehybrid"]] * 4, dtype=np.int64)
    runs = [HierarchicalMutation(constraint_at(SMALL))._do(
        None, X, random_state=np.random.default_rng(9)) for _ in range(2)]
    assert np.array_equal(runs[0], runs[1])


@given(any_vectors())
@settings(max_examples=200, deadline=None)
def test_the_search_constraint_accepts_any_vector_at_the_deploy_scale(vector: list[int]) -> None:
    fitted = constraint_at(SMALL)(tuple(vector))
    assert fitted is not None and arch_at(fitted, SMALL) is not None

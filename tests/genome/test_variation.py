"""Repair, mutation (three resolutions) and crossover always give valid canonical genomes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from star.genome import (
    Genome,
    Resolution,
    crossover,
    load_genome,
    mutate,
    random_genome,
    repair,
    validate_vector,
)
from star.genome.encoding import MODEL_GENES, GenomeData, OperatorGenes, operator_index
from star.genome.repair import nearest_divisor
from star.genome.spec import TokenMixer
from star.genome.variation import mutate_operator
from tests.conftest import GENOMES
from tests.genome.strategies import any_vectors, in_bounds_vectors, seeds

REFS = [load_genome(p).genes for p in sorted(GENOMES.glob("*.yaml"))]
REFS_BY_NAME = {p.stem: load_genome(p).genes for p in sorted(GENOMES.glob("*.yaml"))}


def assert_valid_canonical(vec: tuple[int, ...]) -> None:
    assert validate_vector(vec) == []
    assert repair(vec) == vec
    Genome.from_vector(vec).to_spec()


@given(any_vectors())
@settings(max_examples=2000, deadline=None)
def test_repair_maps_any_vector_to_a_valid_genome(vector: list[int]) -> None:
    assert_valid_canonical(repair(vector))


@given(in_bounds_vectors())
@settings(max_examples=1000, deadline=None)
def test_repair_is_idempotent(vector: list[int]) -> None:
    once = repair(vector)
    assert repair(once) == once


def test_repair_is_nearest_for_a_single_bad_gene() -> None:
    genes = list(load_genome(GENOMES / "lfm2-350m.yaml").genes)
    ref = GenomeData.decode(genes)
    k = ref.layers[2]  # the attention operator
    genes[operator_index(k, "kv_heads")] = 0  # out of bounds low -> clamp to 1
    fixed = GenomeData.decode(repair(genes))
    assert fixed.operators[k].featurizer["kv_heads"] == 1
    assert nearest_divisor(16, 7) == 8 and nearest_divisor(16, 6) == 4
    assert nearest_divisor(12, 5) == 4


def test_valid_genomes_are_unchanged_by_repair() -> None:
    for genes in REFS:
        assert repair(genes) == genes


@given(seeds, st.sampled_from(list(Resolution)), st.integers(0, len(REFS) - 1))
@settings(max_examples=1500, deadline=None)
def test_mutation_at_each_resolution_is_valid(seed: int, res: Resolution, ref: int) -> None:
    rng = np.random.default_rng(seed)
    child = mutate(REFS[ref], rng, res)
    assert_valid_canonical(child)
    # frozen family genes never change
    before, after = GenomeData.decode(REFS[ref]).model, GenomeData.decode(child).model
    for g in MODEL_GENES:
        if g.frozen:
            assert before[g.name] == after[g.name]


@given(seeds)
@settings(max_examples=200, deadline=None)
def test_mutation_chains_from_random_genomes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    genes = random_genome(rng)
    for _ in range(10):
        genes = mutate(genes, rng)
        assert_valid_canonical(genes)


@given(seeds, st.integers(0, len(REFS) - 1), st.integers(0, len(REFS) - 1))
@settings(max_examples=1500, deadline=None)
def test_layerwise_crossover_is_valid(seed: int, i: int, j: int) -> None:
    rng = np.random.default_rng(seed)
    a = REFS[i] if seed % 3 else random_genome(rng)
    b = REFS[j] if seed % 5 else random_genome(rng)
    c1, c2 = crossover(a, b, rng)
    assert_valid_canonical(c1)
    assert_valid_canonical(c2)


def test_crossover_mixes_layers_of_both_parents() -> None:
    lfm = load_genome(GENOMES / "lfm2-350m.yaml")
    mamba = load_genome(GENOMES / "mamba2-370m.yaml")
    mixed = 0
    for seed in range(50):
        c1, _ = crossover(lfm.genes, mamba.genes, np.random.default_rng(seed))
        kinds = {ly.mixer.kind.value for ly in Genome.from_vector(c1).to_spec().layers}
        mixed += "ssm" in kinds and "shortconv" in kinds
    assert mixed > 10


def test_same_seed_same_offspring() -> None:
    a = mutate(REFS[0], np.random.default_rng(7))
    b = mutate(REFS[0], np.random.default_rng(7))
    assert a == b
    ra = random_genome(np.random.default_rng(3))
    assert ra == random_genome(np.random.default_rng(3))


def test_each_resolution_changes_what_it_says() -> None:
    base = GenomeData.decode(REFS[0])
    changed = {r: 0 for r in Resolution}
    for seed in range(200):
        for r in Resolution:
            child = GenomeData.decode(mutate(REFS[0], np.random.default_rng(seed), r))
            if r == Resolution.BACKBONE:
                changed[r] += child.layers != base.layers or child.share != base.share
            elif r == Resolution.OPERATOR:
                classes = {(o.token_mixer, o.channel_mixer, o.norm) for o in child.operators}
                base_classes = {(o.token_mixer, o.channel_mixer, o.norm) for o in base.operators}
                changed[r] += classes != base_classes
            else:
                changed[r] += (child.model != base.model
                               or [o.featurizer for o in child.operators]
                               != [o.featurizer for o in base.operators])
    assert all(n > 120 for n in changed.values()), changed


def _two_attention_ops() -> GenomeData:
    """LFM2-350M whose attention layers use two operator genomes (8 and 4 KV heads)."""
    data = GenomeData.decode(REFS_BY_NAME["lfm2-350m"])
    attn = data.layers[2]
    second = OperatorGenes(data.operators[attn].token_mixer, data.operators[attn].channel_mixer,
                           data.operators[attn].norm, dict(data.operators[attn].featurizer))
    second.featurizer["kv_heads"] = 4
    data.operators[2] = second
    data.layers = [2 if (k == attn and i > 8) else k for i, k in enumerate(data.layers)]
    return data


def test_operator_mutation_can_swap_a_class_in_every_operator_at_once() -> None:
    base = _two_attention_ops()
    attn_layers = [i for i, k in enumerate(base.layers) if base.operators[k].mixer.is_attention]
    whole, single = 0, 0
    for seed in range(400):
        data = GenomeData.decode(base.encode())
        mutate_operator(data, np.random.default_rng(seed))
        kinds = {data.operators[data.layers[i]].mixer for i in attn_layers}
        if not any(k.is_attention for k in kinds):
            whole += 1  # both attention operators became the same other class
        elif len(kinds) == 2:
            single += 1  # one of them changed
    assert whole > 20 and single > 20


def test_a_new_class_takes_a_donor_shape_or_one_scaled_to_the_model() -> None:
    lfm2 = GenomeData.decode(REFS_BY_NAME["lfm2-350m"])
    attn = lfm2.operators[lfm2.layers[2]]
    found = set()
    for seed in range(300):
        data = GenomeData.decode(lfm2.encode())
        mutate_operator(data, np.random.default_rng(seed))
        op = data.operators[data.layers[0]]
        if op.mixer == TokenMixer.SSM:  # no SSM to copy: d_inner = 2 * d_model (Mamba-2)
            assert op.featurizer["heads"] * op.featurizer["head_dim"] * 8 == 2 * 1024
            found.add("ssm")
        elif op.mixer == TokenMixer.ATTENTION:  # from the short conv: attention existed
            for name in ("heads", "kv_heads", "head_dim", "qk_norm"):
                assert op.featurizer[name] == attn.featurizer[name]  # the donor's shape
            found.add("attention")
    assert found == {"ssm", "attention"}

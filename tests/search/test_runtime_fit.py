"""fit_runtime brings ANY genome to the nearest exportable llama.cpp arch, deterministically.

Before cross-family search, the fit kept a genome inside its parent's family and the constraint
dropped offspring that left it; these tests pin the new rule (star.search.runtime_fit): nearest
by per-layer edit cost, ``allowed_archs`` and mixer restrictions honoured, exportable genomes
unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from star.export import UnsupportedGenome, check_exportable
from star.genome import (
    Genome,
    Scale,
    crossover,
    load_genome,
    mutate,
    random_genome,
    scale_spec,
)
from star.genome.encoding import TOKEN_MIXERS, GenomeData
from star.genome.spec import ChannelMixer, TokenMixer
from star.search.arch_fit import ARCHS
from star.search.runtime_fit import edit_cost, fit_runtime, make_constraint, rank_fits
from tests.conftest import GENOMES
from tests.genome.strategies import any_vectors
from tests.support.other_process import in_another_process

LFM2 = load_genome(GENOMES / "lfm2-350m.yaml").genes
HYBRID = load_genome(GENOMES / "hybrid-ssm-attn-300m.yaml").genes
MAMBA2 = load_genome(GENOMES / "mamba2-370m.yaml").genes
LINEAR = load_genome(GENOMES / "hybrid-linear-attn-350m.yaml").genes


def arch_of(genes: tuple[int, ...], scale: Scale | None = None) -> str | None:
    spec = Genome(genes).to_spec()
    try:
        return check_exportable(scale_spec(spec, scale) if scale else spec).name
    except UnsupportedGenome:
        return None


def mixers(genes: tuple[int, ...]) -> str:
    """One letter per layer: c short conv, a attention, w swa, s ssm, l linear attention."""
    letter = {"shortconv": "c", "attention": "a", "swa": "w", "ssm": "s", "linear_attention": "l"}
    return "".join(letter[la.mixer.kind.value] for la in Genome(genes).to_spec().layers)


def with_mixer(genes: tuple[int, ...], op: int, mixer: TokenMixer) -> tuple[int, ...]:
    data = GenomeData.decode(genes)
    data.operators[op].token_mixer = TOKEN_MIXERS.index(mixer)
    return data.encode()


def test_fit_is_identity_on_every_exportable_reference() -> None:
    exportable = [p for p in sorted(GENOMES.glob("*.yaml")) if arch_of(load_genome(p).genes)]
    assert len(exportable) >= 9
    for path in exportable:
        genes = load_genome(path).genes
        assert fit_runtime(genes) == genes, path.name
        assert rank_fits(genes)[0].cost == 0.0


_FIT_MUTANTS = """
import json
import numpy as np
from star.genome import Genome, load_genome, mutate
from star.search.runtime_fit import fit_runtime
from tests.conftest import GENOMES
rng = np.random.default_rng(0)
base = load_genome(GENOMES / "lfm2-350m.yaml").genes
print(json.dumps([Genome(fit_runtime(mutate(base, rng))).genome_id for _ in range(20)]))
"""


def test_fit_is_the_same_for_any_sequence_type_and_in_other_processes() -> None:
    rng = np.random.default_rng(0)
    mutants = [mutate(LFM2, rng) for _ in range(20)]
    fits = [fit_runtime(v) for v in mutants]
    assert sum(f != v for f, v in zip(fits, mutants, strict=True)) >= 5  # the fit did work
    for v, fit in zip(mutants, fits, strict=True):
        assert fit_runtime(list(v)) == fit_runtime(np.array(v)) == fit
    # the same mutants fitted under other string-hash salts: no set or dict order leaks in
    ids = [Genome(f).genome_id for f in fits]
    for salt in (1, 2):
        assert in_another_process(_FIT_MUTANTS, hash_seed=salt) == ids


def test_every_single_mutant_of_each_family_is_fitted_to_an_exportable_genome() -> None:
    for seed_genes in (LFM2, HYBRID, MAMBA2):
        rng = np.random.default_rng(1)
        mutants = [mutate(seed_genes, rng) for _ in range(60)]
        raw = sum(arch_of(v) is not None for v in mutants)
        assert all(arch_of(fit_runtime(v)) is not None for v in mutants)
        assert raw < 60  # raw mutants leave the runtime; fitted ones never do
    wide = Genome(LFM2).data
    wide.model["d_model"] += 1  # 1088: heads * head_dim follows d_model
    spec = Genome(fit_runtime(wide.encode())).to_spec()
    assert spec.d_model == 1088 and check_exportable(spec).name == "lfm2"
    attn = spec.attention_layers[0].mixer
    assert attn.n_heads * attn.head_dim == 1088  # type: ignore[union-attr]


def test_all_short_convs_to_ssm_moves_lfm2_to_granitehybrid_and_to_attention_to_qwen3() -> None:
    conv_op = GenomeData.decode(LFM2).layers[0]
    to_ssm = fit_runtime(with_mixer(LFM2, conv_op, TokenMixer.SSM))
    assert arch_of(to_ssm) == "granitehybrid"
    assert mixers(to_ssm) == mixers(LFM2).replace("c", "s")  # only the convs changed class
    spec = Genome(to_ssm).to_spec()
    ssm = spec.layers_of(TokenMixer.SSM)[0].mixer
    assert ssm.d_inner == 2 * spec.d_model  # type: ignore[union-attr]
    to_attn = fit_runtime(with_mixer(LFM2, conv_op, TokenMixer.ATTENTION))
    assert arch_of(to_attn) == "qwen3" and set(mixers(to_attn)) == {"a"}


def test_mixed_shortconv_and_ssm_genome_goes_to_the_family_of_its_majority() -> None:
    lfm2 = GenomeData.decode(LFM2)
    attn_op = lfm2.layers[2]
    conv_ssm = with_mixer(LFM2, attn_op, TokenMixer.SSM)  # 10 convs + 6 SSM, no attention
    fitted = fit_runtime(conv_ssm)
    assert arch_of(fitted) == "lfm2"
    assert mixers(fitted).count("c") == 15 and mixers(fitted).count("a") == 1  # one made attn
    # SSM majority: a crossover child of a granitehybrid and an LFM2 parent
    seen: set[str] = set()
    for seed in range(20):
        for child in crossover(LFM2, HYBRID, np.random.default_rng(seed)):
            kinds = set(mixers(child))
            arch = arch_of(fitted := fit_runtime(child))
            assert arch in ("lfm2", "lfm2moe", "granitehybrid"), (mixers(child), arch)
            if {"c", "s"} <= kinds:
                seen.add(arch)
                n_c, n_s = mixers(child).count("c"), mixers(child).count("s")
                if abs(n_c - n_s) >= 4:  # a clear majority decides
                    assert (arch == "granitehybrid") == (n_s > n_c), mixers(child)
            assert len(mixers(fitted)) == len(mixers(child))  # depth never changes
    assert seen == {"lfm2", "granitehybrid"}


def test_linear_attention_genome_fits_to_qwen3_or_to_an_allowed_family() -> None:
    assert arch_of(LINEAR) is None
    assert arch_of(fit_runtime(LINEAR)) == "qwen3"
    for allowed in (("lfm2",), ("granitehybrid",), ("lfm2", "granitehybrid"), ("mamba2",)):
        fitted = fit_runtime(LINEAR, allowed_archs=allowed)
        assert arch_of(fitted) in allowed, allowed
        assert "l" not in mixers(fitted)


@pytest.mark.parametrize("arch", ARCHS)
def test_allowed_archs_is_honoured_for_every_arch_from_every_family(arch: str) -> None:
    for genes in (LFM2, HYBRID, MAMBA2, LINEAR):
        fitted = fit_runtime(genes, allowed_archs=(arch,))
        assert arch_of(fitted) == arch, mixers(genes)


def test_mixer_restrictions_pick_the_family_they_leave() -> None:
    only_ssm_attn = fit_runtime(LFM2, token_mixers=[TokenMixer.SSM, TokenMixer.ATTENTION],
                                channel_mixers=[ChannelMixer.SWIGLU])
    assert arch_of(only_ssm_attn) == "granitehybrid"
    no_ffn = fit_runtime(LFM2, channel_mixers=[ChannelMixer.NONE])
    assert arch_of(no_ffn) == "mamba2"
    # nothing can hold it: the nearest candidate comes back and the constraint rejects it
    constraint = make_constraint(lambda g: g.to_spec(),
                                 token_mixers=[TokenMixer.LINEAR_ATTENTION])
    assert constraint(LFM2) is None


def test_edit_cost_is_zero_only_for_the_genome_itself_and_counts_class_changes() -> None:
    lfm2 = GenomeData.decode(LFM2)
    assert edit_cost(lfm2, lfm2) == 0.0
    one_conv_to_attn = GenomeData.decode(LFM2)
    one_conv_to_attn.operators.append(one_conv_to_attn.operators[lfm2.layers[2]])
    one_conv_to_attn.layers[0] = len(one_conv_to_attn.operators) - 1
    assert edit_cost(lfm2, one_conv_to_attn) == 1.0
    ranks = rank_fits(with_mixer(LFM2, lfm2.layers[0], TokenMixer.SSM))
    assert [f.cost for f in ranks] == sorted(f.cost for f in ranks)
    assert ranks[0].arch == "granitehybrid" and ranks[0].cost < 3 < ranks[1].cost


def test_constraint_restricts_operators_and_checks_the_deploy_scale() -> None:
    deploy = Scale(d_model=64, head_dim=16, vocab_size=256)
    allowed = [TokenMixer.SHORTCONV, TokenMixer.ATTENTION]
    constraint = make_constraint(lambda g: scale_spec(g.to_spec(), deploy),
                                 allowed_archs=("lfm2",), token_mixers=allowed,
                                 channel_mixers=[ChannelMixer.SWIGLU])
    rng = np.random.default_rng(2)
    accepted = [v for v in (constraint(random_genome(rng, n_layers=(2, 6), base=LFM2))
                            for _ in range(200)) if v is not None]
    assert len(accepted) > 150  # was > 20 when offspring outside the family were dropped
    for v in accepted:
        spec = scale_spec(Genome(v).to_spec(), deploy)
        assert check_exportable(spec).name == "lfm2"
        assert {layer.mixer.kind for layer in spec.layers} <= set(allowed)


def test_random_genomes_are_fitted_to_every_family() -> None:
    rng = np.random.default_rng(3)
    archs = [arch_of(fit_runtime(random_genome(rng))) for _ in range(150)]
    assert None not in archs
    assert set(archs) >= {"lfm2", "qwen3", "llama", "mamba2", "granitehybrid"}


@given(any_vectors())
@settings(max_examples=400, deadline=None)
def test_any_vector_is_fitted_to_an_exportable_genome(vector: list[int]) -> None:
    fitted = fit_runtime(vector)
    assert arch_of(fitted) is not None, mixers(fitted)
    assert fit_runtime(fitted) == fitted  # a fit is a fixed point


def test_the_open_constraint_keeps_any_operator_mix_and_only_refuses_disallowed_operators(
) -> None:
    """runtime executorch: no fitting into llama.cpp families; a genome comes back canonical
    and unchanged in its operators (linear attention included), unless an operator is not
    allowed."""
    from star.genome import load_genome
    from star.genome.spec import TokenMixer
    from star.search.runtime_fit import make_open_constraint
    from tests.conftest import GENOMES

    linear = load_genome(GENOMES / "hybrid-linear-attn-350m.yaml")
    open_space = make_open_constraint(lambda g: g.to_spec())
    assert open_space(tuple(linear.genes)) == tuple(linear.genes)
    no_linear = make_open_constraint(lambda g: g.to_spec(), token_mixers=[
        TokenMixer.ATTENTION, TokenMixer.SHORTCONV])
    assert no_linear(tuple(linear.genes)) is None

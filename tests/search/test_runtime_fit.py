"""fit_runtime keeps mutants inside their llama.cpp family, deterministically."""

from __future__ import annotations

import numpy as np

from star.export import UnsupportedGenome, check_exportable
from star.genome import Genome, load_genome, mutate, random_genome, scale_spec
from star.genome.spec import ChannelMixer, TokenMixer
from star.search.runtime_fit import fit_runtime, make_constraint
from tests.conftest import GENOMES

LFM2 = load_genome(GENOMES / "lfm2-350m.yaml").genes


def exportable(genes: tuple[int, ...]) -> bool:
    try:
        check_exportable(Genome(genes).to_spec())
        return True
    except UnsupportedGenome:
        return False


def test_fit_is_identity_on_exportable_genomes_and_deterministic() -> None:
    for name in ("lfm2-350m", "llama-3.2-1b", "mamba2-370m", "lfm2-1.2b"):
        genes = load_genome(GENOMES / f"{name}.yaml").genes
        assert fit_runtime(genes) == genes, name
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = mutate(LFM2, rng)
        assert fit_runtime(v) == fit_runtime(v)


def test_mutants_of_lfm2_stay_runnable() -> None:
    rng = np.random.default_rng(1)
    mutants = [mutate(LFM2, rng) for _ in range(100)]
    raw = sum(exportable(v) for v in mutants)
    fitted = sum(exportable(fit_runtime(v)) for v in mutants)
    assert fitted >= 90 > raw  # about half of raw single mutations leave the runtime
    # a width mutation is refitted: heads * head_dim follows d_model
    wide = Genome(LFM2).data
    wide.model["d_model"] += 1  # 1088
    spec = Genome(fit_runtime(wide.encode())).to_spec()
    assert spec.d_model == 1088 and check_exportable(spec).name == "lfm2"
    attn = spec.attention_layers[0].mixer
    assert attn.n_heads * attn.head_dim == 1088  # type: ignore[union-attr]


def test_constraint_restricts_operators_and_checks_the_deploy_scale() -> None:
    from star.genome import Scale

    deploy = Scale(d_model=64, head_dim=16, vocab_size=256)
    allowed = [TokenMixer.SHORTCONV, TokenMixer.ATTENTION]
    constraint = make_constraint(lambda g: scale_spec(g.to_spec(), deploy),
                                 allowed_archs=("lfm2",), token_mixers=allowed,
                                 channel_mixers=[ChannelMixer.SWIGLU])
    rng = np.random.default_rng(2)
    accepted = [v for v in (constraint(random_genome(rng, n_layers=(2, 6), base=LFM2))
                            for _ in range(200)) if v is not None]
    assert len(accepted) > 20
    for v in accepted:
        spec = scale_spec(Genome(v).to_spec(), deploy)
        assert check_exportable(spec).name == "lfm2"
        assert {layer.mixer.kind for layer in spec.layers} <= set(allowed)

"""Size-matched baselines (star.genome.match): within tolerance, same family, still exportable."""

from __future__ import annotations

import pytest

from star.cost import count_params
from star.export import check_exportable
from star.genome import Genome, load_genome
from star.genome.match import MatchError, at_depth, at_width, match_params
from star.genome.spec import AttentionSpec, TokenMixer
from tests.conftest import GENOMES

LLAMA = load_genome(GENOMES / "llama-3.2-1b.yaml")
LFM2 = load_genome(GENOMES / "lfm2-350m.yaml")
LFM2_1B = load_genome(GENOMES / "lfm2-1.2b.yaml")
MAMBA2 = load_genome(GENOMES / "mamba2-370m.yaml")
HYBRID = load_genome(GENOMES / "hybrid-ssm-attn-300m.yaml")


def test_llama_matched_to_lfm2_350m_is_a_llama_within_2_percent() -> None:
    r = match_params(LLAMA, LFM2)
    spec = r.genome.to_spec()
    assert abs(r.params.params - 354_483_968) <= 0.02 * 354_483_968
    assert r.error == pytest.approx((r.params.params - 354_483_968) / 354_483_968)
    assert check_exportable(spec).name == "llama"
    # REF's vocabulary, embedding and context; GENOME's depth, head_dim, GQA ratio, numerics
    assert (spec.vocab_size, spec.tie_embeddings, spec.context_length) == (65536, True, 128000)
    assert spec.rope_theta == 500000 and spec.n_layers == 16
    attn = spec.layers[0].mixer
    assert isinstance(attn, AttentionSpec)
    assert attn.head_dim == 64 and attn.n_heads == 4 * attn.n_kv_heads
    assert attn.n_heads * attn.head_dim == spec.d_model == 1024
    assert r.genome.name == "llama-3.2-1b-matched-lfm2-350m"


@pytest.mark.parametrize(("genome", "ref", "by"), [
    (LLAMA, LFM2_1B, "width"), (LLAMA, LFM2, "depth"), (LFM2, LLAMA, "width"),
    (MAMBA2, LFM2, "width"), (HYBRID, LFM2_1B, "width"), (HYBRID, LFM2, "depth"),
])
def test_matches_stay_in_their_arch_and_within_tolerance(genome: Genome, ref: Genome,
                                                         by: str) -> None:
    r = match_params(genome, ref, by=by)  # type: ignore[arg-type]
    assert abs(r.error) <= 0.02
    assert check_exportable(r.genome.to_spec()).name == check_exportable(genome.to_spec()).name
    has_ffn = any(la.channel is not None for la in genome.to_spec().layers)
    if by == "width" and has_ffn:  # without FFNs the trim is by depth
        assert r.n_layers == genome.to_spec().n_layers
    elif by == "depth":
        assert r.d_model == genome.to_spec().d_model


def test_mamba2_without_ffn_is_trimmed_by_depth() -> None:
    r = match_params(MAMBA2, LFM2)
    assert r.ffn_shift == 0 and r.n_layers != 48
    assert {la.mixer.kind for la in r.genome.to_spec().layers} == {TokenMixer.SSM}


def test_keep_embedding_and_non_embedding_count() -> None:
    r = match_params(LLAMA, LFM2, keep_embedding=True)
    assert r.genome.to_spec().vocab_size == 128256
    assert abs(r.error) <= 0.02
    ne = match_params(LLAMA, LFM2, count="non_embedding")
    assert abs(ne.params.non_embedding - count_params(LFM2.to_spec()).non_embedding) <= (
        0.02 * ne.target)
    assert ne.target == 287_375_104


def test_impossible_tolerance_names_the_error() -> None:
    with pytest.raises(MatchError, match="outside the tolerance of 0.0%"):
        match_params(LLAMA, LFM2, tolerance=0.0)


@pytest.mark.parametrize("name", ["lfm2-350m", "llama-3.2-1b", "mamba2-370m",
                                  "hybrid-ssm-attn-300m", "lfm2-8b-a1b", "lfm2-350m-swa"])
def test_width_and_depth_scaling_keep_the_genome_exportable(name: str) -> None:
    genome = load_genome(GENOMES / f"{name}.yaml")
    arch = check_exportable(genome.to_spec()).name
    widths = [u for u in range(4, 40) if at_width(genome.data, u) is not None]
    assert widths
    for u in widths:
        scaled = at_width(genome.data, u)
        assert scaled is not None
        assert check_exportable(Genome.from_vector(scaled.encode()).to_spec()).name == arch
    depths = [n for n in range(1, 65) if at_depth(genome.data, n) is not None]
    assert genome.to_spec().n_layers in depths and max(depths) == 64
    for n in depths:
        squeezed = at_depth(genome.data, n)
        assert squeezed is not None
        deep = Genome.from_vector(squeezed.encode()).to_spec()
        assert deep.n_layers == n
        assert check_exportable(deep).name == arch

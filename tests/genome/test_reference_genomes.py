"""Reference genomes load, validate and match the figures of shared/FACTS.md exactly."""

from __future__ import annotations

import pytest

from star.cost import analyze, count_params, kv_bytes_per_token
from star.genome import load_genome
from star.genome.spec import AttentionSpec, MoESpec, TokenMixer
from tests.conftest import GENOMES

ALL = sorted(GENOMES.glob("*.yaml"))

LFM2 = {
    # file: (d_model, n_heads, ffn, layers, attention layer indices, params)
    "lfm2-350m.yaml": (1024, 16, 4608, 16, [2, 5, 8, 10, 12, 14], 354_483_968),
    "lfm2-700m.yaml": (1536, 24, 6912, 16, [2, 5, 8, 10, 12, 14], 742_489_344),
    "lfm2-1.2b.yaml": (2048, 32, 8192, 16, [2, 5, 8, 10, 12, 14], 1_170_340_608),
    "lfm2-2.6b.yaml": (2048, 32, 10752, 30, [2, 5, 9, 13, 17, 21, 24, 27], 2_569_272_320),
}


def lfm2_formula(V: int, d: int, L: int, n_conv: int, n_attn: int, n_kv: int, hd: int,
                 ff: int) -> int:
    """FACTS.md's closed form for an LFM2-style stack."""
    n_layers = n_conv + n_attn
    return (V * d + n_conv * (3 * d * d + d * d + L * d)
            + n_attn * (2 * d * d + 2 * d * n_kv * hd + 2 * hd)
            + n_layers * (3 * d * ff + 2 * d) + d)


def test_reference_set_is_complete() -> None:
    names = {p.name for p in ALL}
    required = {"lfm2-350m.yaml", "lfm2-700m.yaml", "lfm2-1.2b.yaml", "lfm2-2.6b.yaml",
                "lfm2-8b-a1b.yaml", "llama-3.2-1b.yaml", "mamba2-370m.yaml"}
    assert required <= names
    kinds = [set(ly.mixer.kind for ly in load_genome(p).to_spec().layers) for p in ALL]
    assert {TokenMixer.SSM, TokenMixer.ATTENTION} in kinds  # an SSM + attention hybrid
    assert any(TokenMixer.LINEAR_ATTENTION in k and len(k) > 1 for k in kinds)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_each_file_has_provenance_and_loads(path) -> None:
    text = path.read_text()
    assert text.startswith("#") and "Provenance" in text
    genome = load_genome(path)
    assert genome.to_spec().n_layers > 0


@pytest.mark.parametrize("fname", sorted(LFM2))
def test_lfm2_exact(fname: str) -> None:
    d, heads, ff, n_layers, attn, params = LFM2[fname]
    spec = load_genome(GENOMES / fname).to_spec()
    assert spec.d_model == d and spec.n_layers == n_layers and spec.vocab_size == 65536
    assert [ly.index for ly in spec.attention_layers] == attn
    for ly in spec.attention_layers:
        assert isinstance(ly.mixer, AttentionSpec)
        assert (ly.mixer.n_heads, ly.mixer.n_kv_heads, ly.mixer.head_dim) == (heads, 8, 64)
        assert ly.mixer.qk_norm
    assert spec.tie_embeddings and spec.rope_theta == 1e6 and spec.norm_eps == 1e-5
    counts = count_params(spec)
    assert counts.params == params
    n_attn = len(attn)
    assert params == lfm2_formula(65536, d, 3, n_layers - n_attn, n_attn, 8, 64, ff)
    assert counts.active == params


def test_kv_per_token_seed_figures() -> None:
    llama = load_genome(GENOMES / "llama-3.2-1b.yaml").to_spec()
    lfm = load_genome(GENOMES / "lfm2-1.2b.yaml").to_spec()
    assert kv_bytes_per_token(llama, 1) == 16_384
    assert kv_bytes_per_token(lfm, 1) == 6_144
    assert kv_bytes_per_token(llama, 1) * 32_000 == 524_288_000  # "524 MB at 32K tokens"
    for name in ("lfm2-350m.yaml", "lfm2-700m.yaml", "lfm2-1.2b.yaml"):
        spec = load_genome(GENOMES / name).to_spec()
        assert kv_bytes_per_token(spec, 2) == 12_288
        assert analyze(spec).kv_bytes[32768] == 384 * 2**20


def test_llama_params() -> None:
    spec = load_genome(GENOMES / "llama-3.2-1b.yaml").to_spec()
    assert count_params(spec).params == 1_235_814_400
    assert spec.vocab_size == 128_256 and spec.rope_theta == 5e5


def test_lfm2_8b_a1b_moe() -> None:
    spec = load_genome(GENOMES / "lfm2-8b-a1b.yaml").to_spec()
    assert spec.n_layers == 24
    assert [ly.index for ly in spec.attention_layers] == [2, 6, 10, 14, 18, 21]
    dense = [ly for ly in spec.layers if not isinstance(ly.channel, MoESpec)]
    assert [ly.index for ly in dense] == [0, 1]
    moe = spec.layers[5].channel
    assert isinstance(moe, MoESpec)
    assert (moe.n_experts, moe.top_k, moe.expert_dim) == (32, 4, 1792)
    assert moe.routing.value == "sigmoid" and moe.expert_bias
    counts = count_params(spec)
    assert counts.params == 8_339_930_560  # "8.3B total"
    assert counts.active == 1_557_740_992  # "1.5B active"


def test_short_conv_state_is_constant() -> None:
    spec = load_genome(GENOMES / "lfm2-1.2b.yaml").to_spec()
    # n_conv x d_model x (kernel - 1) values, F32 in llama.cpp
    assert analyze(spec).state_bytes == 10 * 2048 * 2 * 4

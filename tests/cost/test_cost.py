"""The analytic cost model against hand computation and its own invariants."""

from __future__ import annotations

import pytest
from gguf import GGMLQuantizationType as QT

from star.cost import (
    DeviceRoofline,
    Quant,
    StorageType,
    analyze,
    count_params,
    decode_flops,
    decode_seconds,
    kv_bytes,
    prefill_flops,
    storage_type,
    tensors,
    ttft_seconds,
    weight_bytes,
)
from star.genome import load_genome, scale_spec
from star.genome.scale import Scale
from tests.conftest import GENOMES

LFM = load_genome(GENOMES / "lfm2-350m.yaml").to_spec()
LLAMA = load_genome(GENOMES / "llama-3.2-1b.yaml").to_spec()
MAMBA = load_genome(GENOMES / "mamba2-370m.yaml").to_spec()
SWA = load_genome(GENOMES / "lfm2-350m-swa.yaml").to_spec()


def test_block_layouts() -> None:
    assert StorageType(QT.Q8_0).nbytes((64, 32)) == 64 * 34
    assert StorageType(QT.Q4_0).nbytes((64, 32)) == 64 * 18
    assert StorageType(QT.Q4_K).nbytes((4, 256)) == 4 * 144
    assert StorageType(QT.Q6_K).nbytes((4, 256)) == 4 * 210
    assert StorageType(QT.F16).nbytes((3, 5)) == 30
    with pytest.raises(ValueError, match="Q4_0 blocks"):
        StorageType(QT.Q4_0).nbytes((3, 5))


def test_storage_rule_without_a_model() -> None:
    def name(*args: object) -> str:
        return storage_type(*args).name  # type: ignore[arg-type]

    assert name("layers.0.mixer.conv.weight", (1024, 1, 3), Quant.Q4_0) == "F32"
    assert name("layers.0.mixer_norm.weight", (1024,), Quant.Q8_0) == "F32"
    assert name("layers.0.ffn.up.weight", (4608, 1024), Quant.Q4_0) == "Q4_0"
    assert name("layers.0.ffn.up.weight", (4608, 1024), "q4_k_m") == "Q4_K"
    assert name("layers.0.ffn.down.weight", (64, 72), Quant.Q4_0) == "F16"  # 72 % 32
    assert name("layers.0.ffn.down.weight", (64, 160), Quant.Q4_K_M) == "Q5_0"  # 160 % 256
    assert name("embed.weight", (65536, 1024), Quant.F32) == "F32"
    assert name("embed.weight", (65536, 1024), Quant.Q4_0) == "Q4_0"  # as an untied embedding
    assert name("lm_head.weight", (65536, 1024), Quant.Q4_0) == "Q6_K"  # a head is a head


def test_weight_bytes_by_hand_for_lfm2_350m() -> None:
    """llama-quantize's rules, by hand: the tied embedding is the head (Q6_K: 210 B per 256);
    Q4_K_M gives Q6_K to ffn_down of layers 0, 1, 4, 7, 10, 13, 14, 15 (use_more_bits(i, 16)) and
    to the 3rd and 6th of the 6 attn_v tensors (use_more_bits(i, 6): i = 2, 5)."""
    counts = count_params(LFM)
    small = 16 * 2 * 1024 + 1024 + 10 * 3 * 1024 + 6 * 2 * 64  # norms, conv kernels: F32
    assert sum(t.numel for t in tensors(LFM) if storage_type(t.name, t.shape, "q4_0").name
               == "F32") == small
    head = 65536 * 1024
    big = counts.params - small - head
    assert weight_bytes(LFM, Quant.F32) == 4 * counts.params
    assert weight_bytes(LFM, Quant.F16) == 2 * (counts.params - small) + 4 * small
    assert weight_bytes(LFM, Quant.Q4_0) == big // 32 * 18 + head // 256 * 210 + 4 * small
    assert weight_bytes(LFM, Quant.Q8_0) == (counts.params - small) // 32 * 34 + 4 * small
    assert weight_bytes(LFM, Quant.Q6_K) == (counts.params - small) // 256 * 210 + 4 * small
    ffn_down, attn_v = 4608 * 1024, 1024 * 512
    more = 8 * ffn_down + 2 * attn_v  # Q6_K instead of Q4_K
    assert weight_bytes(LFM, Quant.Q4_K_M) == ((big - more) // 256 * 144 + more // 256 * 210
                                               + head // 256 * 210 + 4 * small)


def test_sliding_window_caps_kv() -> None:
    assert kv_bytes(SWA, 2048) == kv_bytes(LFM, 2048)
    assert kv_bytes(SWA, 32768) == kv_bytes(LFM, 4096)
    assert kv_bytes(LFM, 32768) == 8 * kv_bytes(LFM, 4096)


def test_flops() -> None:
    # decode: ~2 flops per active matmul parameter, plus attention over the context
    per_token = 2 * (count_params(LLAMA).non_embedding - 16 * 2 * 2048 - 2048
                     + LLAMA.vocab_size * 2048)
    attn = 4 * 32 * 64 * 16 * 4097
    assert decode_flops(LLAMA, 4096) == pytest.approx(per_token + attn, rel=1e-9)
    # prefill of C tokens: C matmul passes + causal attention sum
    c = 512
    assert prefill_flops(LLAMA, c) == pytest.approx(
        per_token * c + 4 * 32 * 64 * 16 * c * (c + 1) / 2, rel=1e-9)
    # recurrent models' decode cost does not grow with context
    assert decode_flops(MAMBA, 32768) == decode_flops(MAMBA, 16)
    assert decode_flops(LFM, 32768) > decode_flops(LFM, 16)


def test_roofline() -> None:
    phone = DeviceRoofline("phone", bandwidth=50e9, flops=200e9)
    # decode at 32K on llama is dominated by weights + 1 GiB of f16 KV
    d32 = decode_seconds(LLAMA, 32768, phone, Quant.Q4_0)
    d4 = decode_seconds(LLAMA, 4096, phone, Quant.Q4_0)
    assert d32 > d4 > 0
    assert ttft_seconds(LLAMA, 32768, phone, Quant.Q4_0) > 8 * ttft_seconds(
        LLAMA, 4096, phone, Quant.Q4_0)
    # LFM2-1.2B vs Llama-3.2-1B: smaller KV -> faster decode at depth
    lfm12 = load_genome(GENOMES / "lfm2-1.2b.yaml").to_spec()
    assert decode_seconds(lfm12, 32768, phone, Quant.Q4_0) < d32


def test_report_is_json_ready() -> None:
    import json

    doc = analyze(MAMBA).to_dict()
    json.dumps(doc)
    assert doc["kv_bytes_per_token"] == 0
    # Mamba-2: conv tail (K-1) x (d_inner + 2GN) + H x P x N state, F32, 48 layers
    assert doc["state_bytes"] == 48 * 4 * (3 * (2048 + 256) + 32 * 64 * 128)


def test_genome_no_runtime_runs_is_still_priced() -> None:
    """Linear attention exports nowhere: the cost model lays it out one block per layer with the
    obvious names, and the same rules apply (tied head Q6_K, norms F32)."""
    spec = load_genome(GENOMES / "hybrid-linear-attn-350m.yaml").to_spec()
    counts = count_params(spec)
    small = sum(t.numel for t in tensors(spec) if len(t.shape) < 2 or "conv" in t.name)
    head = spec.vocab_size * spec.d_model
    assert spec.tie_embeddings
    assert weight_bytes(spec, Quant.F32) == 4 * counts.params
    assert weight_bytes(spec, Quant.Q8_0) == (counts.params - small) // 32 * 34 + 4 * small
    assert weight_bytes(spec, Quant.Q4_0) == ((counts.params - small - head) // 32 * 18
                                              + head // 256 * 210 + 4 * small)


def test_report_prices_every_offered_type_the_genome_can_take() -> None:
    doc = analyze(LFM).to_dict()
    assert set(doc["weight_bytes"]) == {q.value for q in Quant}
    wb = doc["weight_bytes"]
    assert wb["q4_0"] < wb["q4_k_m"] < wb["q6_k"] < wb["q8_0"] < wb["f16"]
    narrow = scale_spec(LFM, Scale(d_model=96, head_dim=32, vocab_size=512))
    assert "q1_0" not in analyze(narrow).weight_bytes  # llama-quantize would abort: no guess
    assert "q4_k_m" in analyze(narrow).weight_bytes

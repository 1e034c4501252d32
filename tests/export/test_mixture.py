"""The ported llama-quantize rules on hand-worked cases (no tool here; see test_quant_tool.py).

Each case is a rule of src/llama-quant.cpp stated as a small model and the type the rule gives.
"""

from __future__ import annotations

import pytest
from gguf import GGMLQuantizationType as QT

from star.export import Quant, QuantModel, UnknownQuant, UnsupportedQuant, as_quant, tensor_types
from star.export.mixture import allows_quantization, default_type, loader_order

D = 256
LLAMA16 = QuantModel(arch="llama", n_layer=16, n_head=8, n_head_kv=8)


Tensors = list[tuple[str, tuple[int, ...]]]


def _dense(n_layer: int = 16, *, tied: bool = True, d: int = D) -> Tensors:
    """A llama-like tensor list (ggml shapes) of ``n_layer`` blocks."""
    out: Tensors = [("token_embd.weight", (d, 384)),
                                             ("output_norm.weight", (d,))]
    if not tied:
        out.append(("output.weight", (d, 384)))
    for i in range(n_layer):
        out += [(f"blk.{i}.attn_norm.weight", (d,)), (f"blk.{i}.attn_q.weight", (d, d)),
                (f"blk.{i}.attn_k.weight", (d, d)), (f"blk.{i}.attn_v.weight", (d, d)),
                (f"blk.{i}.attn_output.weight", (d, d)), (f"blk.{i}.ffn_norm.weight", (d,)),
                (f"blk.{i}.ffn_gate.weight", (d, 2 * d)), (f"blk.{i}.ffn_up.weight", (d, 2 * d)),
                (f"blk.{i}.ffn_down.weight", (2 * d, d))]
    return out


MORE_BITS_16 = {0, 1, 4, 7, 10, 13, 14, 15}  # use_more_bits(i, 16)


def test_tied_head_is_q6_k_and_untied_embedding_keeps_the_base_type() -> None:
    tied = tensor_types(_dense(2), Quant.Q4_0, LLAMA16)
    assert tied["token_embd.weight"] == QT.Q6_K  # the tied head
    assert tied["blk.0.ffn_up.weight"] == QT.Q4_0
    untied = tensor_types(_dense(2, tied=False), Quant.Q4_0, LLAMA16)
    assert untied["token_embd.weight"] == QT.Q4_0
    assert untied["output.weight"] == QT.Q6_K
    # Q8_0 keeps its head at Q8_0; a row that is not a whole base block gives Q8_0
    assert tensor_types(_dense(2), Quant.Q8_0, LLAMA16)["token_embd.weight"] == QT.Q8_0
    odd = tensor_types(_dense(3, d=96), Quant.Q4_K_M, LLAMA16)
    assert odd["token_embd.weight"] == QT.Q8_0  # 96 % 256 != 0
    assert odd["blk.0.ffn_up.weight"] == QT.Q5_0  # Q4_K's fallback (96 % 32 == 0)
    assert odd["blk.2.ffn_down.weight"] == QT.Q5_0  # row 192
    assert odd["blk.0.ffn_down.weight"] == QT.Q8_0  # a more-bits layer: Q6_K's fallback
    assert tensor_types(_dense(1, d=80), Quant.Q4_K_M, LLAMA16)["blk.0.attn_q.weight"] == QT.F16


def test_q4_k_m_gives_q6_k_to_attn_v_and_ffn_down_by_position() -> None:
    types = tensor_types(_dense(16), Quant.Q4_K_M, LLAMA16)
    for i in range(16):
        more = QT.Q6_K if i in MORE_BITS_16 else QT.Q4_K
        assert types[f"blk.{i}.attn_v.weight"] == more, i
        assert types[f"blk.{i}.ffn_down.weight"] == more, i
        assert types[f"blk.{i}.attn_q.weight"] == QT.Q4_K
        assert types[f"blk.{i}.attn_norm.weight"] == QT.F32
    q5 = tensor_types(_dense(16), Quant.Q5_K_M, LLAMA16)
    assert {i for i in range(16) if q5[f"blk.{i}.ffn_down.weight"] == QT.Q6_K} == MORE_BITS_16
    assert q5["blk.2.ffn_up.weight"] == QT.Q5_K


def test_counters_follow_the_loaders_order_not_the_files() -> None:
    """blk.10 sorts after blk.9 (by number), and attn_v is counted in that order."""
    assert loader_order(["blk.10.a", "blk.2.b", "output.weight", "blk.2.a"]) == [
        "output.weight", "blk.2.a", "blk.2.b", "blk.10.a"]
    shuffled = list(reversed(_dense(16)))
    assert tensor_types(shuffled, Quant.Q4_K_M, LLAMA16) == tensor_types(
        _dense(16), Quant.Q4_K_M, LLAMA16)


def test_small_and_mid_mixtures() -> None:
    q3m = tensor_types(_dense(16), Quant.Q3_K_M, LLAMA16)
    assert [q3m[f"blk.{i}.attn_v.weight"] for i in range(3)] == [QT.Q5_K, QT.Q5_K, QT.Q4_K]
    assert q3m["blk.0.ffn_down.weight"] == QT.Q5_K  # i < n / 16
    assert q3m["blk.1.ffn_down.weight"] == QT.Q4_K
    assert q3m["blk.0.attn_output.weight"] == QT.Q4_K
    assert q3m["blk.0.ffn_up.weight"] == QT.Q3_K
    q2 = tensor_types(_dense(4), Quant.Q2_K, LLAMA16)
    assert (q2["blk.0.attn_v.weight"], q2["blk.0.ffn_down.weight"],
            q2["blk.0.attn_output.weight"]) == (QT.Q3_K, QT.Q3_K, QT.Q3_K)
    q4s = tensor_types(_dense(16), Quant.Q4_K_S, LLAMA16)
    assert [q4s[f"blk.{i}.attn_v.weight"] for i in (3, 4)] == [QT.Q5_K, QT.Q4_K]
    assert [q4s[f"blk.{i}.ffn_down.weight"] for i in (1, 2)] == [QT.Q5_K, QT.Q4_K]


def test_gqa_4_and_eight_experts_and_70b() -> None:
    gqa4 = QuantModel(arch="llama", n_layer=16, n_head=8, n_head_kv=2)
    assert tensor_types(_dense(2), Quant.IQ4_NL, gqa4)["blk.1.attn_v.weight"] == QT.Q5_K
    assert tensor_types(_dense(2), Quant.IQ4_NL, LLAMA16)["blk.1.attn_v.weight"] == QT.IQ4_NL
    assert tensor_types(_dense(2), Quant.Q2_K, gqa4)["blk.1.attn_v.weight"] == QT.Q4_K
    experts8 = QuantModel(arch="lfm2moe", n_layer=16, n_head=8, n_head_kv=2, n_expert=8)
    types = tensor_types(_dense(2), Quant.Q4_K_M, experts8)
    assert types["blk.1.attn_v.weight"] == types["blk.1.attn_k.weight"] == QT.Q8_0
    assert types["blk.1.attn_output.weight"] == QT.Q5_K
    big = QuantModel(arch="llama", n_layer=80, n_head=8, n_head_kv=2)
    assert big.is_70b and not LLAMA16.is_70b
    assert tensor_types(_dense(2), Quant.Q4_K_S, big)["blk.1.attn_v.weight"] == QT.Q5_K


def test_expert_stacks_use_the_block_number_and_mxfp4() -> None:
    moe = QuantModel(arch="lfm2moe", n_layer=16, n_head=4, n_head_kv=2, n_expert=4)
    stacks: Tensors = [("blk.7.ffn_down_exps.weight", (2 * D, D, 4)),
                       ("blk.7.ffn_up_exps.weight", (D, 2 * D, 4)),
                       ("blk.0.ffn_gate_inp.weight", (D, 4))]
    types = tensor_types(stacks, Quant.Q4_K_M, moe)
    assert types["blk.7.ffn_down_exps.weight"] == QT.Q6_K  # block 7 is a more-bits layer
    assert types["blk.0.ffn_gate_inp.weight"] == QT.F32  # the router stays F32
    mx = tensor_types([*stacks, ("blk.7.attn_q.weight", (D, D))], Quant.MXFP4_MOE, moe)
    assert mx["blk.7.ffn_up_exps.weight"] == QT.MXFP4 and mx["blk.7.attn_q.weight"] == QT.Q8_0


def test_ternary_and_binary_types() -> None:
    untied = tensor_types(_dense(1, tied=False), Quant.TQ1_0, LLAMA16)
    assert untied["token_embd.weight"] == QT.Q4_K and untied["output.weight"] == QT.Q6_K
    assert untied["blk.0.ffn_up.weight"] == QT.TQ1_0
    assert tensor_types(_dense(1, d=96), Quant.TQ2_0, LLAMA16)["blk.0.attn_q.weight"] == QT.Q4_0
    assert tensor_types(_dense(1, d=128), Quant.Q1_0, LLAMA16)["blk.0.attn_q.weight"] == QT.Q1_0
    with pytest.raises(UnsupportedQuant, match="blk.0.attn_k.weight: row of 96 .* Q1_0"):
        tensor_types(_dense(1, d=96), Quant.Q1_0, LLAMA16)


def test_not_quantized_by_the_tool() -> None:
    assert not allows_quantization("blk.0.ssm_conv1d.weight", (4, 512))
    assert not allows_quantization("blk.0.ffn_gate_inp.weight", (256, 8))
    assert not allows_quantization("blk.0.ssm_a", (1, 8))  # does not end in "weight"
    assert not allows_quantization("blk.0.ffn_up.weight", (256, 1))  # one row: ggml_n_dims 1
    assert allows_quantization("blk.0.ffn_up.weight", (256, 2))
    types = tensor_types([("blk.0.ssm_norm.weight", (256, 2)), ("blk.0.ssm_d", (1, 8))],
                         Quant.BF16, LLAMA16)
    assert set(types.values()) == {QT.F32}


def test_default_type_is_a_per_tensor_lower_bound_of_the_mixture() -> None:
    from star.export.mixture import tensor_nbytes

    gqa4 = QuantModel(arch="llama", n_layer=16, n_head=8, n_head_kv=2, n_expert=8)
    for model in (LLAMA16, gqa4):
        for quant in Quant:
            if quant == Quant.Q1_0:
                continue
            exact = tensor_types(_dense(16), quant, model)
            for name, shape in _dense(16):
                low = default_type(name, shape, quant)
                assert tensor_nbytes(shape, low) <= tensor_nbytes(shape, exact[name]), (quant, name)


def test_request_names() -> None:
    assert as_quant("Q4_K_M") == Quant.Q4_K_M == as_quant(Quant.Q4_K_M)
    assert Quant.Q4_K_M.tool_name == "Q4_K_M" and Quant.Q4_K_M.by_tool
    assert not Quant.F16.by_tool and Quant.BF16.written == Quant.F16
    assert int(Quant.Q4_K_M.file_type) == 15 and Quant.Q4_K_M.base_type == QT.Q4_K
    with pytest.raises(UnknownQuant, match="alias of q4_k_m"):
        as_quant("q4_k")
    with pytest.raises(UnknownQuant, match="choose one of: .*q4_k_m.*mxfp4_moe"):
        as_quant("q5")

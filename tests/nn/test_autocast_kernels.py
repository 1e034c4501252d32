"""Under CPU bf16 autocast (how the proxy trains), attention at small head widths and MoE experts
run in fp32: faster there (see their docstrings) and exactly the fp32 result."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from star.genome.spec import MoESpec, Routing
from star.nn.attention import FP32_ATTENTION_BELOW_HEAD_DIM, sdpa
from star.nn.moe import MoE


def qkv(head_dim: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randn(2, 4, 24, head_dim, generator=gen) for _ in range(3))


def test_small_head_attention_under_bf16_autocast_is_the_fp32_result() -> None:
    q, k, v = qkv(16)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = sdpa(q, k, v, is_causal=True)
        plain = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert plain.dtype == torch.bfloat16  # what autocast alone would have done


def test_bf16_inputs_at_small_head_width_come_back_in_bf16() -> None:
    q, k, v = (t.bfloat16() for t in qkv(16))
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    got = sdpa(q, k, v, is_causal=True)
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected.bfloat16())


def test_wide_heads_keep_autocasts_bf16_attention() -> None:
    q, k, v = qkv(FP32_ATTENTION_BELOW_HEAD_DIM)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = sdpa(q, k, v, is_causal=True)
    assert got.dtype == torch.bfloat16


@pytest.mark.parametrize("routing", [Routing.SOFTMAX, Routing.SIGMOID])
def test_moe_experts_under_bf16_autocast_compute_the_fp32_result(routing: Routing) -> None:
    spec = MoESpec(n_experts=4, top_k=2, expert_dim=32, routing=routing, expert_bias=False)
    moe = MoE(spec, 16)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in (moe.gate_exps, moe.up_exps, moe.down_exps):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        moe.router.weight.zero_()  # equal logits: bf16 and fp32 routing pick the same experts
    x = torch.randn(3, 10, 16, generator=gen)
    expected = moe(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = moe(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=0)

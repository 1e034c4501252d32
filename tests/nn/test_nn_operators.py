"""Each operator against a naive reference written straight from its definition (FACTS.md)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from nn_specs import (
    D_MODEL,
    attention,
    linear_attention,
    moe_sigmoid,
    moe_softmax,
    shortconv,
    ssm,
    swa,
)

from star.genome.spec import MoESpec, Routing
from star.nn.attention import Attention
from star.nn.linear_attention import LinearAttention
from star.nn.moe import MoE, route
from star.nn.rope import apply_rope, rope_cos_sin
from star.nn.shortconv import ShortConv
from star.nn.ssm import SSM

TOL = 1e-5
B, T = 2, 13


def randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim >= 2:
                p.copy_(noise / math.sqrt(p.shape[-1]))
            elif name.endswith(("A_log", "dt_bias")):
                p.copy_(0.5 * noise)
            else:
                p.copy_(1.0 + 0.3 * noise)
    return module


def inputs(seed: int = 1, d: int = D_MODEL) -> torch.Tensor:
    return torch.randn(B, T, d, generator=torch.Generator().manual_seed(seed))


def rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


@pytest.mark.parametrize(
    "spec",
    [attention(), attention(qk_norm=False, heads=3, kv=1, hd=10), swa(window=4), swa(window=1)],
    ids=["gqa_qknorm", "mqa_odd_width", "swa4", "swa1"],
)
def test_attention_matches_naive(spec) -> None:
    mod = randomized(Attention(spec, D_MODEL, rope_theta=1e4, norm_eps=1e-5))
    x = inputs()
    hd, rep = spec.head_dim, spec.n_heads // spec.n_kv_heads
    q = (x @ mod.q_proj.weight.T).view(B, T, spec.n_heads, hd)
    k = (x @ mod.k_proj.weight.T).view(B, T, spec.n_kv_heads, hd)
    v = (x @ mod.v_proj.weight.T).view(B, T, spec.n_kv_heads, hd)
    if spec.qk_norm:  # QK-norm before RoPE
        q = rms(q, 1e-5) * mod.q_norm.weight
        k = rms(k, 1e-5) * mod.k_norm.weight
    cos, sin = rope_cos_sin(torch.arange(T), hd, 1e4, torch.float32)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    out = torch.zeros(B, T, spec.n_heads, hd)
    for h in range(spec.n_heads):
        kh, vh = k[:, :, h // rep], v[:, :, h // rep]  # kv head serving q head h
        for t in range(T):
            visible = [j for j in range(t + 1) if spec.window <= 0 or t - j < spec.window]
            scores = torch.einsum("bd,bjd->bj", q[:, t, h], kh[:, visible]) / math.sqrt(hd)
            out[:, t, h] = torch.einsum("bj,bjd->bd", scores.softmax(-1), vh[:, visible])
    ref = out.reshape(B, T, -1) @ mod.o_proj.weight.T
    got = mod(x, pos=0)
    assert (got - ref).abs().max().item() < TOL


def test_rope_is_rotate_half() -> None:
    """Channel i pairs with i + hd/2 and rotates by pos * theta^(-2i/hd)."""
    hd, pos = 8, 5
    x = torch.randn(1, 1, 1, hd)
    cos, sin = rope_cos_sin(torch.tensor([pos]), hd, 100.0, torch.float32)
    y = apply_rope(x, cos, sin)[0, 0, 0]
    for i in range(hd // 2):
        ang = pos * 100.0 ** (-2 * i / hd)
        a, b = x[0, 0, 0, i], x[0, 0, 0, i + hd // 2]
        assert torch.isclose(y[i], a * math.cos(ang) - b * math.sin(ang), atol=1e-6)
        assert torch.isclose(y[i + hd // 2], b * math.cos(ang) + a * math.sin(ang), atol=1e-6)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_shortconv_matches_formula(kernel: int) -> None:
    mod = randomized(ShortConv(shortconv(kernel), D_MODEL))
    x = inputs()
    bcx = x @ mod.in_proj.weight.T
    b_gate, c_gate, xs = bcx.split(D_MODEL, dim=-1)  # B, C, x in that order
    u = b_gate * xs
    w = mod.conv.weight[:, 0]  # (d, L)
    v = torch.zeros_like(u)
    for t in range(T):
        for k in range(kernel):
            src = t - (kernel - 1) + k
            if src >= 0:
                v[:, t] += w[:, k] * u[:, src]
    ref = (c_gate * v) @ mod.out_proj.weight.T
    assert (mod(x, pos=0) - ref).abs().max().item() < TOL


def test_linear_attention_matches_formula() -> None:
    spec = linear_attention()
    mod = randomized(LinearAttention(spec, D_MODEL))
    mod.chunk = 4
    x = inputs()
    h, hd = spec.n_heads, spec.head_dim

    def heads(w: torch.Tensor) -> torch.Tensor:
        return (x @ w.T).view(B, T, h, hd)

    phi_q, phi_k = F.elu(heads(mod.q_proj.weight)) + 1, F.elu(heads(mod.k_proj.weight)) + 1
    v = heads(mod.v_proj.weight)
    y = torch.zeros(B, T, h, hd)
    for t in range(T):
        a = torch.einsum("bhd,bjhd->bjh", phi_q[:, t], phi_k[:, : t + 1])  # (B, j, H)
        num = torch.einsum("bjh,bjhd->bhd", a, v[:, : t + 1])
        y[:, t] = num / (a.sum(1)[..., None] + 1e-6)
    ref = y.reshape(B, T, -1) @ mod.o_proj.weight.T
    assert (mod(x, pos=0) - ref).abs().max().item() < TOL


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("chunk", [0, 4, 64])
def test_ssm_matches_llama_cpp_mamba2_math(groups: int, chunk: int) -> None:
    spec = ssm(groups)
    mod = randomized(SSM(spec, D_MODEL, norm_eps=1e-5))
    mod.chunk = chunk
    x = inputs()
    H, P, N, G, K = spec.n_heads, spec.head_dim, spec.state, groups, spec.conv_kernel
    di = spec.d_inner
    zxbcdt = x @ mod.in_proj.weight.T
    z, xbc, dt = zxbcdt[..., :di], zxbcdt[..., di : di + spec.conv_dim], zxbcdt[..., -H:]
    conv = torch.zeros_like(xbc)
    for t in range(T):
        for k in range(K):
            src = t - (K - 1) + k
            if src >= 0:
                conv[:, t] += mod.conv1d.weight[:, 0, k] * xbc[:, src]
    xbc = F.silu(conv + mod.conv1d.bias)
    xs = xbc[..., :di].view(B, T, H, P)
    bs = xbc[..., di : di + G * N].view(B, T, G, N)
    cs = xbc[..., di + G * N :].view(B, T, G, N)
    dt = F.softplus(dt + mod.dt_bias)
    a = -torch.exp(mod.A_log)
    y = torch.zeros(B, T, H, P)
    for h in range(H):
        g = h // (H // G)
        s = torch.zeros(B, P, N)
        for t in range(T):
            s = s * torch.exp(dt[:, t, h] * a[h])[:, None, None] + torch.einsum(
                "bp,bn->bpn", xs[:, t, h] * dt[:, t, h, None], bs[:, t, g]
            )
            y[:, t, h] = torch.einsum("bpn,bn->bp", s, cs[:, t, g]) + xs[:, t, h] * mod.D[h]
    y = y.reshape(B, T, di) * F.silu(z)
    y = rms(y.view(B, T, G, di // G), 1e-5).reshape(B, T, di) * mod.norm.weight
    ref = y @ mod.out_proj.weight.T
    assert (mod(x, pos=0) - ref).abs().max().item() < TOL


@pytest.mark.parametrize("spec", [moe_softmax(), moe_sigmoid()], ids=["softmax", "sigmoid_bias"])
def test_moe_matches_dense_reference(spec: MoESpec) -> None:
    mod = randomized(MoE(spec, D_MODEL))
    if mod.expert_bias is not None:
        with torch.no_grad():
            mod.expert_bias.copy_(torch.linspace(-0.5, 0.5, spec.n_experts))
    x = inputs()
    xf = x.reshape(-1, D_MODEL)
    logits = xf @ mod.router.weight.T
    ref = torch.zeros_like(xf)
    for n in range(xf.shape[0]):
        if spec.routing == Routing.SOFTMAX:
            probs = logits[n].softmax(-1)
            chosen = sorted(range(spec.n_experts), key=lambda e: -probs[e].item())[: spec.top_k]
            weights = probs[chosen] / probs[chosen].sum()
        else:
            probs = logits[n].sigmoid()
            biased = probs + mod.expert_bias
            chosen = sorted(range(spec.n_experts), key=lambda e: -biased[e].item())[: spec.top_k]
            weights = probs[chosen] / max(probs[chosen].sum().item(), 6.1e-5)
        for e, w in zip(chosen, weights, strict=True):
            hid = F.silu(mod.gate_exps[e] @ xf[n]) * (mod.up_exps[e] @ xf[n])
            ref[n] += w * (mod.down_exps[e] @ hid)
    assert (mod(x) - ref.view(B, T, D_MODEL)).abs().max().item() < TOL


def test_expert_bias_only_chooses() -> None:
    """A large bias on expert 0 forces it into every top-k, but its weight is its raw prob."""
    spec = MoESpec(n_experts=4, top_k=1, expert_dim=8, routing=Routing.SIGMOID, expert_bias=True)
    logits = torch.tensor([[0.0, 3.0, 1.0, -1.0]])
    bias = torch.tensor([10.0, 0.0, 0.0, 0.0])
    idx, w = route(logits, spec, bias)
    assert idx.tolist() == [[0]]
    assert torch.allclose(w, torch.ones(1, 1))  # 0.5 / max(0.5, 6.1e-5)
    idx, w = route(logits, spec, None)
    assert idx.tolist() == [[1]]
    soft = MoESpec(n_experts=4, top_k=2, expert_dim=8, routing=Routing.SOFTMAX, expert_bias=False)
    idx, w = route(logits, soft, None)
    assert idx.tolist() == [[1, 2]] and torch.allclose(w.sum(-1), torch.ones(1))

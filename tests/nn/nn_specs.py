"""Tiny ArchSpec factories and helpers for the star.nn tests (built directly, not from YAML)."""

from __future__ import annotations

import math

import torch

from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    ChannelMixer,
    ChannelMixerSpec,
    FFNSpec,
    LayerSpec,
    LinearAttentionSpec,
    MoESpec,
    Norm,
    Routing,
    ShortConvSpec,
    SSMSpec,
    TokenMixer,
    TokenMixerSpec,
)
from star.nn import StarModel

D_MODEL = 64
VOCAB = 256


def attention(*, qk_norm: bool = True, heads: int = 4, kv: int = 2, hd: int = 16) -> AttentionSpec:
    return AttentionSpec(n_heads=heads, n_kv_heads=kv, head_dim=hd, qk_norm=qk_norm)


def swa(window: int = 5) -> AttentionSpec:
    return AttentionSpec(4, 2, 16, qk_norm=True, window=window, kind=TokenMixer.SWA)


def shortconv(kernel: int = 3) -> ShortConvSpec:
    return ShortConvSpec(kernel=kernel)


def linear_attention() -> LinearAttentionSpec:
    return LinearAttentionSpec(n_heads=4, head_dim=16)


def ssm(groups: int = 2) -> SSMSpec:
    return SSMSpec(n_heads=8, head_dim=16, state=8, n_groups=groups, conv_kernel=4)


def swiglu(ff: int = 96) -> FFNSpec:
    return FFNSpec(ffn_dim=ff)


def mlp(ff: int = 128) -> FFNSpec:
    return FFNSpec(ffn_dim=ff, kind=ChannelMixer.MLP)


def moe_softmax() -> MoESpec:
    return MoESpec(n_experts=6, top_k=2, expert_dim=32, routing=Routing.SOFTMAX, expert_bias=False)


def moe_sigmoid() -> MoESpec:
    return MoESpec(n_experts=8, top_k=3, expert_dim=32, routing=Routing.SIGMOID, expert_bias=True)


def arch(
    layers: list[tuple[TokenMixerSpec, ChannelMixerSpec | None]],
    *,
    name: str = "tiny",
    share: dict[int, int] | None = None,
    operators: list[int] | None = None,
    norm: Norm = Norm.RMSNORM,
    tie: bool = True,
    d_model: int = D_MODEL,
    vocab: int = VOCAB,
) -> ArchSpec:
    """An ArchSpec from (mixer, channel) pairs; ``share`` maps layer index -> share group."""
    share = share or {}
    ops = operators or list(range(len(layers)))
    specs = tuple(
        LayerSpec(
            index=i,
            operator=ops[i],
            mixer=mixer,
            channel=channel,
            norm=norm,
            share_group=share.get(i, 0),
        )
        for i, (mixer, channel) in enumerate(layers)
    )
    return ArchSpec(
        name=name,
        d_model=d_model,
        vocab_size=vocab,
        tie_embeddings=tie,
        rope_theta=1e4,
        norm_eps=1e-5,
        context_length=512,
        layers=specs,
    )


def operator_specs() -> dict[str, ArchSpec]:
    """One two-layer model per operator (the operator twice, so state passes between layers)."""
    mixers: dict[str, TokenMixerSpec] = {
        "attention": attention(),
        "attention_noqk_mha": attention(qk_norm=False, heads=2, kv=2, hd=24),
        "swa": swa(),
        "shortconv": shortconv(),
        "linear_attention": linear_attention(),
        "ssm": ssm(),
    }
    out = {name: arch([(m, swiglu()), (m, swiglu())], name=name) for name, m in mixers.items()}
    channels: dict[str, ChannelMixerSpec | None] = {
        "mlp": mlp(),
        "moe_softmax": moe_softmax(),
        "moe_sigmoid": moe_sigmoid(),
        "no_ffn": None,
    }
    for name, channel in channels.items():
        out[name] = arch([(shortconv(), channel), (attention(), channel)], name=name)
    return out


def mixed_specs() -> dict[str, ArchSpec]:
    """Several small hybrids, including weight sharing, LayerNorm and an untied head."""
    lfm2_like = arch(
        [(shortconv(), swiglu()) for _ in range(2)]
        + [(attention(), swiglu())]
        + [(shortconv(), swiglu()) for _ in range(2)]
        + [(attention(), swiglu())],
        name="lfm2_like",
    )
    hybrid = arch(
        [
            (ssm(), None),
            (attention(hd=24), moe_sigmoid()),
            (linear_attention(), mlp()),
            (swa(window=4), swiglu()),
            (shortconv(kernel=4), moe_softmax()),
        ],
        name="hybrid",
        tie=False,
    )
    # layers 0/2/4 share one short conv, 1/3 share one SSM (same operator, same group)
    shared = arch(
        [
            (shortconv(), swiglu()),
            (ssm(groups=1), swiglu()),
            (shortconv(), mlp()),
            (ssm(groups=1), None),
            (shortconv(), swiglu()),
            (attention(), swiglu()),
        ],
        name="shared",
        operators=[0, 1, 0, 1, 0, 2],
        share={0: 1, 1: 2, 2: 1, 3: 2, 4: 1},
    )
    layernorm = arch(
        [(linear_attention(), swiglu()), (swa(window=3), mlp()), (ssm(groups=4), swiglu())],
        name="layernorm",
        norm=Norm.LAYERNORM,
    )
    return {s.name: s for s in (lfm2_like, hybrid, shared, layernorm)}


def all_specs() -> dict[str, ArchSpec]:
    return {**operator_specs(), **mixed_specs()}


@torch.no_grad()
def randomize(model: StarModel, seed: int = 0) -> StarModel:
    """Re-draw weights at O(1) activation scale so every operator visibly moves the logits.

    The production init (std 0.02) leaves the residual stream dominated by the embedding, which
    would let a broken mixer hide under a 1e-5 tolerance.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen)
        if name in ("embed.weight", "lm_head.weight"):  # logits ~O(1): float32 noise ~1e-6
            p.copy_(0.5 * noise / math.sqrt(p.shape[-1]))
        elif p.ndim >= 2:
            p.copy_(noise / math.sqrt(p.shape[-1]))
        elif name.endswith(("A_log", "dt_bias")):
            p.add_(0.3 * noise)
        elif name.endswith("expert_bias"):
            p.copy_(0.5 * noise)
        elif name.endswith("bias"):
            p.copy_(0.1 * noise)
        else:  # norm weights, D
            p.copy_(1.0 + 0.2 * noise)
    return model


def set_chunk(model: StarModel, chunk: int) -> None:
    """Set the chunk length of every chunked scan (small chunks exercise the cross-chunk path)."""
    for module in model.modules():
        if hasattr(module, "chunk"):
            module.chunk = chunk


def build(spec: ArchSpec, seed: int = 0) -> StarModel:
    model = StarModel(spec, dtype=torch.float32)
    randomize(model, seed)
    model.eval()
    return model


def lfm2_spec(
    *, d: int, n_heads: int, n_kv: int, ff: int, attn: tuple[int, ...], n_layers: int, vocab: int
) -> ArchSpec:
    """An LFM2-shaped spec: short conv everywhere except the ``attn`` layers, SwiGLU after each."""
    hd = d // n_heads
    layers = tuple(
        LayerSpec(
            index=i,
            operator=int(i in attn),
            mixer=AttentionSpec(n_heads, n_kv, hd, qk_norm=True) if i in attn else ShortConvSpec(3),
            channel=FFNSpec(ff),
            norm=Norm.RMSNORM,
        )
        for i in range(n_layers)
    )
    return ArchSpec("lfm2", d, vocab, True, 1e6, 1e-5, 128_000, layers)


def lfm2_formula(*, V: int, d: int, n_conv: int, n_attn: int, n_kv: int, hd: int, ff: int) -> int:
    """FACTS.md: the LFM2 parameter count (tied embeddings, kernel 3)."""
    L, n_layers = 3, n_conv + n_attn
    return (
        V * d
        + n_conv * (3 * d * d + d * d + L * d)
        + n_attn * (2 * d * d + 2 * d * n_kv * hd + 2 * hd)
        + n_layers * (3 * d * ff + 2 * d)
        + d
    )

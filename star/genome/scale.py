"""Two scales of one genome: the same architecture at another width and vocabulary.

A genome describes the deployment-scale model (e.g. LFM2-350M). Proxy training needs the *same
architecture* small: same depth, same operator sequence and sharing, same ratios (KV groups per
head, FFN expansion, SSM expansion, experts and top-k), at a small width. ``scale_spec`` maps an
``ArchSpec`` to such a spec; ratios are rounded to the nearest valid integer configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from star.genome.repair import nearest_divisor
from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    ChannelMixerSpec,
    FFNSpec,
    LayerSpec,
    LinearAttentionSpec,
    MoESpec,
    SSMSpec,
    TokenMixerSpec,
)


@dataclass(frozen=True)
class Scale:
    """Target size of a scaled spec. ``None`` fields keep the genome's own value.

    d_model: residual width; head_dim: per-head width of attention, linear attention and SSM
    heads; vocab_size: tokens; max_experts caps MoE experts (top-k scaled along);
    context_length: trained context; multiple: FFN widths are rounded to this multiple.
    """

    d_model: int
    head_dim: int | None = None
    vocab_size: int | None = None
    max_experts: int | None = None
    context_length: int | None = None
    multiple: int = 8


TINY = Scale(d_model=64, head_dim=16, vocab_size=256, max_experts=4, context_length=2048)
PROXY = Scale(d_model=128, head_dim=32, vocab_size=4096, max_experts=8, context_length=4096)


def _round_to(x: float, multiple: int) -> int:
    return max(multiple, int(round(x / multiple)) * multiple)


def _heads(orig_heads: int, orig_hd: int, ratio: float, hd: int) -> int:
    """Head count that keeps the mixer's inner width ratio to d_model at head width ``hd``."""
    return max(1, int(round(orig_heads * orig_hd * ratio / hd)))


def _scale_mixer(m: TokenMixerSpec, ratio: float, hd: int | None) -> TokenMixerSpec:
    if isinstance(m, AttentionSpec):
        new_hd = hd or m.head_dim
        heads = _heads(m.n_heads, m.head_dim, ratio, new_hd)
        groups = max(1, round(heads * m.n_kv_heads / m.n_heads))
        return replace(m, n_heads=heads, n_kv_heads=nearest_divisor(heads, groups),
                       head_dim=new_hd)
    if isinstance(m, LinearAttentionSpec):
        new_hd = hd or m.head_dim
        return replace(m, n_heads=_heads(m.n_heads, m.head_dim, ratio, new_hd), head_dim=new_hd)
    if isinstance(m, SSMSpec):
        new_hd = hd or m.head_dim
        heads = _heads(m.n_heads, m.head_dim, ratio, new_hd)
        groups = nearest_divisor(heads, m.n_groups)
        state = max(8, _round_to(m.state * min(1.0, ratio * 4), 8))
        return replace(m, n_heads=heads, head_dim=new_hd, n_groups=groups, state=state)
    return m  # short conv: width follows d_model, kernel unchanged


def _scale_channel(c: ChannelMixerSpec | None, ratio: float, scale: Scale
                   ) -> ChannelMixerSpec | None:
    if isinstance(c, FFNSpec):
        return replace(c, ffn_dim=_round_to(c.ffn_dim * ratio, scale.multiple))
    if isinstance(c, MoESpec):
        experts = c.n_experts if scale.max_experts is None else min(c.n_experts, scale.max_experts)
        top_k = max(1, min(experts, round(c.top_k * experts / c.n_experts)))
        return replace(c, n_experts=experts, top_k=top_k,
                       expert_dim=_round_to(c.expert_dim * ratio, scale.multiple))
    return c


def scale_spec(spec: ArchSpec, scale: Scale) -> ArchSpec:
    """``spec`` at another width (same depth, operators, sharing and ratios)."""
    ratio = scale.d_model / spec.d_model
    layers = tuple(
        LayerSpec(
            index=layer.index,
            operator=layer.operator,
            mixer=_scale_mixer(layer.mixer, ratio, scale.head_dim),
            channel=_scale_channel(layer.channel, ratio, scale),
            norm=layer.norm,
            share_group=layer.share_group,
        )
        for layer in spec.layers
    )
    return replace(
        spec,
        d_model=scale.d_model,
        vocab_size=scale.vocab_size or spec.vocab_size,
        context_length=scale.context_length or spec.context_length,
        layers=layers,
    )

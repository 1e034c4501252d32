"""Parameter inventory of an ArchSpec: every tensor, its shape and role, without torch.

The names and shapes are those of ``star.nn.StarModel`` (which maps one-to-one onto GGUF tensors),
so the analytic counts here are checked against the built model in the tests. Weight sharing:
a shared token mixer is *stored* once in torch (``unique``) but once per layer in a GGUF file,
because llama.cpp has no weight sharing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    ChannelMixer,
    FFNSpec,
    LayerSpec,
    LinearAttentionSpec,
    MoESpec,
    Norm,
    ShortConvSpec,
    SSMSpec,
)


@dataclass(frozen=True)
class Tensor:
    """One parameter tensor. ``active_fraction`` < 1 for MoE experts (top_k / experts)."""

    name: str
    shape: tuple[int, ...]
    layer: int | None  # None for embedding, head and final norm
    shared_copy: bool = False  # True when this layer reuses another layer's weights
    active_fraction: float = 1.0
    is_embedding: bool = False  # token embedding and untied output head

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _norm(prefix: str, d: int, kind: Norm, layer: int | None) -> list[Tensor]:
    out = [Tensor(f"{prefix}.weight", (d,), layer)]
    if kind == Norm.LAYERNORM:
        out.append(Tensor(f"{prefix}.bias", (d,), layer))
    return out


def _mixer(layer: LayerSpec, d: int, shared: bool) -> list[Tensor]:
    p, i, m = f"layers.{layer.index}.mixer", layer.index, layer.mixer

    def t(name: str, *shape: int) -> Tensor:
        return Tensor(f"{p}.{name}", tuple(shape), i, shared_copy=shared)

    if isinstance(m, AttentionSpec):
        out = [t("q_proj.weight", m.q_dim, d), t("k_proj.weight", m.kv_dim, d),
               t("v_proj.weight", m.kv_dim, d), t("o_proj.weight", d, m.q_dim)]
        if m.qk_norm:
            out += [t("q_norm.weight", m.head_dim), t("k_norm.weight", m.head_dim)]
        return out
    if isinstance(m, ShortConvSpec):
        return [t("in_proj.weight", 3 * d, d), t("conv.weight", d, 1, m.kernel),
                t("out_proj.weight", d, d)]
    if isinstance(m, LinearAttentionSpec):
        e = m.inner_dim
        return [t("q_proj.weight", e, d), t("k_proj.weight", e, d), t("v_proj.weight", e, d),
                t("o_proj.weight", d, e)]
    assert isinstance(m, SSMSpec)
    return [t("in_proj.weight", m.in_proj_dim, d), t("conv1d.weight", m.conv_dim, 1, m.conv_kernel),
            t("conv1d.bias", m.conv_dim), t("dt_bias", m.n_heads), t("A_log", m.n_heads),
            t("D", m.n_heads), t("norm.weight", m.d_inner), t("out_proj.weight", d, m.d_inner)]


def _channel(layer: LayerSpec, d: int) -> list[Tensor]:
    p, i, c = f"layers.{layer.index}.ffn", layer.index, layer.channel
    if c is None:
        return []
    if isinstance(c, FFNSpec):
        ff = c.ffn_dim
        if c.kind == ChannelMixer.MLP:
            return [Tensor(f"{p}.up.weight", (ff, d), i), Tensor(f"{p}.down.weight", (d, ff), i)]
        return [Tensor(f"{p}.gate.weight", (ff, d), i), Tensor(f"{p}.up.weight", (ff, d), i),
                Tensor(f"{p}.down.weight", (d, ff), i)]
    assert isinstance(c, MoESpec)
    e, ff, frac = c.n_experts, c.expert_dim, c.top_k / c.n_experts
    out = [Tensor(f"{p}.router.weight", (e, d), i)]
    if c.expert_bias:
        out.append(Tensor(f"{p}.expert_bias", (e,), i))
    out += [Tensor(f"{p}.gate_exps", (e, ff, d), i, active_fraction=frac),
            Tensor(f"{p}.up_exps", (e, ff, d), i, active_fraction=frac),
            Tensor(f"{p}.down_exps", (e, d, ff), i, active_fraction=frac)]
    return out


def tensors(spec: ArchSpec) -> list[Tensor]:
    """Every parameter tensor of the model, in model order (shared copies included, flagged)."""
    d = spec.d_model
    out = [Tensor("embed.weight", (spec.vocab_size, d), None, is_embedding=True)]
    for layer in spec.layers:
        shared = spec.weight_owner(layer.index) != layer.index
        out += _norm(f"layers.{layer.index}.mixer_norm", d, layer.norm, layer.index)
        out += _mixer(layer, d, shared)
        if layer.channel is not None:
            out += _norm(f"layers.{layer.index}.ffn_norm", d, layer.norm, layer.index)
            out += _channel(layer, d)
    final_kind = spec.layers[-1].norm if spec.layers else Norm.RMSNORM
    out += _norm("final_norm", d, final_kind, None)
    if not spec.tie_embeddings:
        out.append(Tensor("lm_head.weight", (spec.vocab_size, d), None, is_embedding=True))
    return out


@dataclass(frozen=True)
class ParamCounts:
    """params: unique trainable parameters (what torch counts); stored: what a GGUF holds
    (shared weights copied); active: parameters touched per token (MoE: top_k of experts)."""

    params: int
    embedding: int
    non_embedding: int
    active: int
    stored: int


def count_params(spec: ArchSpec) -> ParamCounts:
    ts = tensors(spec)
    unique = [t for t in ts if not t.shared_copy]
    params = sum(t.numel for t in unique)
    embedding = sum(t.numel for t in unique if t.is_embedding)
    active = sum(round(t.numel * t.active_fraction) for t in unique)
    return ParamCounts(
        params=params,
        embedding=embedding,
        non_embedding=params - embedding,
        active=active,
        stored=sum(t.numel for t in ts),
    )

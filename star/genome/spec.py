"""Typed architecture spec: the validated, per-layer view of a genome.

Every consumer downstream of the genome (cost model, torch model, exporter) reads an ``ArchSpec``
and never the raw integer genome, so the interpretation of genes lives in exactly one place
(``star.genome.genome.Genome.to_spec``). Specs are frozen: they are values, hashable, safe to
share between threads and processes.

Conventions (shared with ``star.nn`` and ``star.export``):
- every token mixer reads and writes width ``d_model``; its inner widths are its own;
- a layer is ``h = x + mixer(norm(x))`` then ``out = h + channel(norm(h))`` (channel optional);
- attention uses rotate-half (NEOX) RoPE, scale ``1/sqrt(head_dim)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class TokenMixer(str, Enum):
    """Token-mixing LIV operator classes. The value is the name used in YAML."""

    ATTENTION = "attention"  # softmax GQA attention over the whole context
    SWA = "swa"  # softmax GQA attention over a sliding window
    SHORTCONV = "shortconv"  # LFM2 gated short convolution
    LINEAR_ATTENTION = "linear_attention"  # kernelised (elu+1) causal linear attention
    SSM = "ssm"  # Mamba-2 style selective state-space recurrence

    @property
    def is_attention(self) -> bool:
        return self in (TokenMixer.ATTENTION, TokenMixer.SWA)

    @property
    def is_recurrent(self) -> bool:
        """True for mixers whose decode state has constant size (no KV cache)."""
        return self in (TokenMixer.SHORTCONV, TokenMixer.LINEAR_ATTENTION, TokenMixer.SSM)


class ChannelMixer(str, Enum):
    """Channel-mixing operator classes."""

    SWIGLU = "swiglu"  # w2(silu(w1 x) * w3 x)
    MLP = "mlp"  # w2(relu(w1 x)^2): ungated squared-ReLU MLP (nemotron_h's FFN)
    MOE = "moe"  # top-k mixture of SwiGLU experts
    NONE = "none"  # no channel mixer (pure Mamba-2 layers)


class Norm(str, Enum):
    RMSNORM = "rmsnorm"  # w * x / rms(x), no +1 offset
    LAYERNORM = "layernorm"  # with weight and bias


class Routing(str, Enum):
    SOFTMAX = "softmax"  # probs = softmax(logits); weights renormalised over the top-k
    SIGMOID = "sigmoid"  # lfm2moe: sigmoid probs, bias only for choosing, weights / sum


@dataclass(frozen=True)
class AttentionSpec:
    """GQA attention. ``window`` > 0 makes it sliding-window (keys at distance < window)."""

    n_heads: int
    n_kv_heads: int
    head_dim: int
    qk_norm: bool
    window: int = 0
    kind: TokenMixer = TokenMixer.ATTENTION

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim


@dataclass(frozen=True)
class ShortConvSpec:
    """LFM2 gated short convolution of width d_model with a causal depthwise kernel."""

    kernel: int
    kind: TokenMixer = TokenMixer.SHORTCONV


@dataclass(frozen=True)
class LinearAttentionSpec:
    """Causal linear attention with feature map elu(x)+1 and a normalising denominator."""

    n_heads: int
    head_dim: int
    kind: TokenMixer = TokenMixer.LINEAR_ATTENTION

    @property
    def inner_dim(self) -> int:
        return self.n_heads * self.head_dim


@dataclass(frozen=True)
class SSMSpec:
    """Mamba-2 selective SSM with llama.cpp ``mamba2`` math (see FACTS.md).

    d_inner = n_heads * head_dim; B and C have ``n_groups`` groups of ``state`` channels.
    """

    n_heads: int
    head_dim: int
    state: int
    n_groups: int
    conv_kernel: int
    kind: TokenMixer = TokenMixer.SSM

    @property
    def d_inner(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def conv_dim(self) -> int:
        """Channels that go through the causal conv: x, B and C."""
        return self.d_inner + 2 * self.n_groups * self.state

    @property
    def in_proj_dim(self) -> int:
        """Output width of in_proj: z, xBC, dt (in that order)."""
        return self.d_inner + self.conv_dim + self.n_heads


TokenMixerSpec = AttentionSpec | ShortConvSpec | LinearAttentionSpec | SSMSpec


@dataclass(frozen=True)
class FFNSpec:
    """Dense SwiGLU or squared-ReLU MLP of hidden width ``ffn_dim``."""

    ffn_dim: int
    kind: ChannelMixer = ChannelMixer.SWIGLU


@dataclass(frozen=True)
class MoESpec:
    """Top-k mixture of SwiGLU experts, each of hidden width ``expert_dim``."""

    n_experts: int
    top_k: int
    expert_dim: int
    routing: Routing
    expert_bias: bool  # lfm2moe-style selection bias (sigmoid routing only)
    kind: ChannelMixer = ChannelMixer.MOE


ChannelMixerSpec = FFNSpec | MoESpec


@dataclass(frozen=True)
class LayerSpec:
    """One layer: its operator, featurized.

    ``operator`` is the index of the operator genome it came from; ``share_group`` > 0 means the
    token mixer's weights are shared with every other layer of the same group and operator (the
    first such layer owns them).
    """

    index: int
    operator: int
    mixer: TokenMixerSpec
    channel: ChannelMixerSpec | None
    norm: Norm
    share_group: int = 0


@dataclass(frozen=True)
class ArchSpec:
    """A whole model at one scale."""

    name: str
    d_model: int
    vocab_size: int
    tie_embeddings: bool
    rope_theta: float
    norm_eps: float
    context_length: int
    layers: tuple[LayerSpec, ...] = field(default_factory=tuple)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def layers_of(self, kind: TokenMixer) -> list[LayerSpec]:
        return [layer for layer in self.layers if layer.mixer.kind == kind]

    @property
    def attention_layers(self) -> list[LayerSpec]:
        return [layer for layer in self.layers if layer.mixer.kind.is_attention]

    def weight_owner(self, index: int) -> int:
        """Index of the layer that owns the token-mixer weights used by layer ``index``."""
        layer = self.layers[index]
        if layer.share_group == 0:
            return index
        for other in self.layers[:index]:
            if other.share_group == layer.share_group and other.operator == layer.operator:
                return other.index
        return index

"""FLOPs of a forward pass (a multiply-add counts 2), for prefill and for decode at depth C.

Per token every matrix touched costs 2 x its active parameters (MoE: top_k of the experts; the
output head always, tied or not; the embedding lookup nothing). Token mixing adds, per layer:
softmax attention 4 x heads x head_dim x (keys visible), short conv 2 x kernel x d, SSM conv
plus a scan of about 5 x H x P x N, linear attention 4 x H x hd^2.
"""

from __future__ import annotations

from dataclasses import replace

from star.cost.params import tensors
from star.genome.spec import ArchSpec, AttentionSpec, LinearAttentionSpec, ShortConvSpec, SSMSpec


def matmul_params_per_token(spec: ArchSpec) -> float:
    """Parameters multiplied per token: all matrices at their active fraction, plus the head."""
    total = 0.0
    for t in tensors(spec):
        if len(t.shape) < 2 or t.name.endswith(("conv.weight", "conv1d.weight")):
            continue
        if t.name == "embed.weight":
            if spec.tie_embeddings:
                total += t.numel  # the tied output head
            continue
        total += t.numel * t.active_fraction
    return total


def _visible_sum(context: int, window: int) -> float:
    """Sum over positions t < context of the keys visible at t: min(t + 1, window)."""
    if not window or window >= context:
        return context * (context + 1) / 2
    return window * (window + 1) / 2 + (context - window) * window


def _mixing_flops(spec: ArchSpec, n_tokens: int, keys: float) -> float:
    """Token-mixing FLOPs of ``n_tokens`` tokens that see ``keys`` attention keys in total
    (per layer without a window; windowed layers are handled by the callers)."""
    total = 0.0
    d = spec.d_model
    for layer in spec.layers:
        m = layer.mixer
        if isinstance(m, AttentionSpec):
            total += 4 * m.n_heads * m.head_dim * keys
        elif isinstance(m, ShortConvSpec):
            total += n_tokens * (2 * m.kernel * d + 2 * d)
        elif isinstance(m, SSMSpec):
            total += n_tokens * (2 * m.conv_kernel * m.conv_dim + 5 * m.d_inner * m.state)
        elif isinstance(m, LinearAttentionSpec):
            total += n_tokens * 4 * m.n_heads * m.head_dim * m.head_dim
    return total


def _without_attention(spec: ArchSpec) -> ArchSpec:
    layers = tuple(ly for ly in spec.layers if not isinstance(ly.mixer, AttentionSpec))
    return replace(spec, layers=layers)


def prefill_flops(spec: ArchSpec, context: int) -> float:
    """FLOPs to process a prompt of ``context`` tokens."""
    total = 2 * matmul_params_per_token(spec) * context
    for layer in spec.layers:
        m = layer.mixer
        if isinstance(m, AttentionSpec):
            total += 4 * m.n_heads * m.head_dim * _visible_sum(context, m.window)
    no_attn = _without_attention(spec)
    return total + _mixing_flops(no_attn, context, 0)


def decode_flops(spec: ArchSpec, depth: int) -> float:
    """FLOPs to generate one token with ``depth`` tokens already in context."""
    total = 2 * matmul_params_per_token(spec)
    for layer in spec.layers:
        m = layer.mixer
        if isinstance(m, AttentionSpec):
            keys = min(depth + 1, m.window) if m.window else depth + 1
            total += 4 * m.n_heads * m.head_dim * keys
    no_attn = _without_attention(spec)
    return total + _mixing_flops(no_attn, 1, 0)

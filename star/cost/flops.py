"""FLOPs of a forward pass (a multiply-add counts 2), for prefill and for decode at depth C.

Per token every matrix touched costs 2 x its active parameters (MoE: top_k of the experts; the
output head always, tied or not; the embedding lookup nothing). Token mixing adds, per layer:
softmax attention 4 x heads x head_dim x (keys visible), short conv 2 x kernel x d, SSM conv
plus a scan of about 5 x H x P x N, linear attention 4 x H x hd^2.
"""

from __future__ import annotations

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


def visible_keys(context: int, window: int) -> float:
    """Sum over positions t < context of the keys visible at t: min(t + 1, window)."""
    if not window or window >= context:
        return context * (context + 1) / 2
    return window * (window + 1) / 2 + (context - window) * window


# The kinds of work a prompt's FLOPs split into (each runs at its own efficiency on a device).
KINDS = ("matmul", "attention", "swa", "shortconv", "ssm", "linear_attention")


def prefill_flops_by_kind(spec: ArchSpec, context: int) -> dict[str, float]:
    """FLOPs to process a prompt of ``context`` tokens, by kind of work (``KINDS``); a
    sliding-window layer counts as ``swa`` only where its window is below the context."""
    parts = dict.fromkeys(KINDS, 0.0)
    parts["matmul"] = 2 * matmul_params_per_token(spec) * context
    d = spec.d_model
    for layer in spec.layers:
        m = layer.mixer
        if isinstance(m, AttentionSpec):
            kind = "swa" if m.window and m.window < context else "attention"
            parts[kind] += 4 * m.n_heads * m.head_dim * visible_keys(context, m.window)
        elif isinstance(m, ShortConvSpec):
            parts["shortconv"] += context * (2 * m.kernel * d + 2 * d)
        elif isinstance(m, SSMSpec):
            parts["ssm"] += context * (2 * m.conv_kernel * m.conv_dim + 5 * m.d_inner * m.state)
        elif isinstance(m, LinearAttentionSpec):
            parts["linear_attention"] += context * 4 * m.n_heads * m.head_dim * m.head_dim
    return parts


def prefill_flops(spec: ArchSpec, context: int) -> float:
    """FLOPs to process a prompt of ``context`` tokens."""
    return sum(prefill_flops_by_kind(spec, context).values())


def decode_flops(spec: ArchSpec, depth: int) -> float:
    """FLOPs to generate one token with ``depth`` tokens already in context: the prompt's FLOPs
    of one token, with each attention layer seeing ``depth + 1`` keys (its window at most)."""
    parts = prefill_flops_by_kind(spec, 1)
    total = sum(v for k, v in parts.items() if k not in ("attention", "swa"))
    for layer in spec.layers:
        m = layer.mixer
        if isinstance(m, AttentionSpec):
            keys = min(depth + 1, m.window) if m.window else depth + 1
            total += 4 * m.n_heads * m.head_dim * keys
    return total

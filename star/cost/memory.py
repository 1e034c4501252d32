"""Memory of a model at inference: weights per quantization, KV cache and recurrent state.

KV cache per token = 2 x KV heads x head dim x bytes per element, summed over attention layers
(a sliding-window layer stops growing at its window). Recurrent state is constant in context:
short conv keeps the last L-1 columns of its gated input, an SSM its conv tail and its (H, P, N)
state, linear attention its (H, hd, hd) matrix and (H, hd) normaliser; llama.cpp keeps recurrent
state in F32.
"""

from __future__ import annotations

from star.cost.quant import Quant, stored_tensors
from star.genome.spec import ArchSpec, AttentionSpec, LinearAttentionSpec, ShortConvSpec, SSMSpec

STATE_BYTES_PER_ELEMENT = 4  # llama.cpp's recurrent-state cache (r_l / s_l) is F32


def weight_bytes(spec: ArchSpec, quant: Quant | str) -> int:
    """Tensor bytes of the GGUF file exported in ``quant`` (shared weights counted per copy;
    every tensor typed as llama-quantize types it: a tied head at Q6_K, mixtures' bumps)."""
    return sum(t.nbytes for t in stored_tensors(spec, quant))


def kv_bytes_per_token(spec: ArchSpec, bytes_per_element: float = 2) -> float:
    """KV-cache growth per token of context over every attention layer (global or window)."""
    total = 0.0
    for layer in spec.layers:
        m = layer.mixer
        if isinstance(m, AttentionSpec):
            total += 2 * m.n_kv_heads * m.head_dim * bytes_per_element
    return total


def kv_bytes(spec: ArchSpec, context: int, bytes_per_element: float = 2) -> float:
    """KV-cache bytes holding ``context`` tokens (sliding-window layers hold at most a window)."""
    total = 0.0
    for layer in spec.layers:
        m = layer.mixer
        if isinstance(m, AttentionSpec):
            kept = min(context, m.window) if m.window else context
            total += 2 * m.n_kv_heads * m.head_dim * bytes_per_element * kept
    return total


def state_bytes(spec: ArchSpec, bytes_per_element: int = STATE_BYTES_PER_ELEMENT) -> int:
    """Constant decode state of all recurrent layers, per sequence."""
    d = spec.d_model
    total = 0
    for layer in spec.layers:
        m = layer.mixer
        if isinstance(m, ShortConvSpec):
            total += d * (m.kernel - 1)
        elif isinstance(m, SSMSpec):
            total += m.conv_dim * (m.conv_kernel - 1) + m.n_heads * m.head_dim * m.state
        elif isinstance(m, LinearAttentionSpec):
            total += m.n_heads * m.head_dim * (m.head_dim + 1)
    return total * bytes_per_element

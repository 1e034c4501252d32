"""A simulated device and proxy training built independently of the surrogate, to judge it on.

``star.search.surrogate`` regresses on analytic features (``star.search.features``, from
``star.cost``). A device simulated from those same features would test nothing but the ridge
solver, so this one reads only the ``ArchSpec``'s fields: it counts its own matrices and costs
them the way a CPU running llama.cpp (Q4_0 weights, F16 KV cache, no flash attention, prompt of
``CONTEXT`` tokens in micro-batches of ``UBATCH``) spends time and memory, with effects that
the analytic model does not have and that the features can at best approximate:

TTFT (ms):
- a matrix multiply runs at ``MATMUL_EFF`` x m / (m + ``Device.tile``) of ``PEAK_FLOPS``, m its
  narrower side (narrow matrices fill the SIMD tiles and caches worse); mixture-of-experts
  matrices at ``Device.expert_efficiency`` of that (tokens gathered per expert, uneven
  batches). ``PER_UNIT`` is the device without these two effects: a fixed time per unit of
  each kind of work, the assumption under which the surrogate's cost model is exact;
- the output head runs for the last prompt token only;
- attention without flash attention computes the scores of a micro-batch against every cell
  the cache holds so far and masks them (no causal saving inside a pass; a sliding window keeps
  ``window + UBATCH`` cells): QK^T and V at ``ATTN_EFF``, and the softmax reads and writes the
  F32 score matrix ``SOFTMAX_PASSES`` times at ``BANDWIDTH``;
- the short conv is elementwise and memory-bound: ``CONV_BYTES`` bytes per channel and tap;
- the SSM scan is sequential: ``SSM_EFF`` of peak, plus ``SSM_STEP_US`` per token and layer;
- each pass streams the active weights at ``BANDWIDTH``, overlapped with its compute except
  for ``OVERLAP_LOSS`` of the shorter one, and pays ``LAUNCH_MS`` per layer; ``FIXED_MS`` per
  prompt.

Peak RSS (MiB): Q4_0 matrices (``Q4_0_BITS`` per weight; an untied output head is stored as
Q6_K, ``Q6_K_BITS``), F32 vectors and conv kernels, shared token mixers stored once; an F16 KV
cache of the context padded to ``KV_PAD`` cells (a sliding window holds ``window + UBATCH``);
F32 recurrent state; the compute buffer of the largest pass (activations of ``UBATCH`` tokens
across the widest projection, the score matrix of the most heads against the most cells, the
logits of one token); ``RUNTIME_MIB`` plus ``ALLOC_SLACK`` of the weights.

Quality (a proxy loss): ``LOSS_FLOOR + LOSS_SCALE x N^-LOSS_EXP + RECALL x exp(-RECALL_RATE x
a) + ASPECT x log(width / depth / ASPECT_BEST)^2``, N the dense parameters plus active experts
plus ``INACTIVE_EXPERT_WORTH`` of the inactive ones (embeddings excluded), a the share of layers
that can recall (global attention 1, sliding window 1/2, SSM 1/5).

Multiplicative log-normal noise of sd ``NOISE`` per figure, drawn from a generator seeded by the
genome id: a pure function of the genome, as a told figure is on replay.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    ChannelMixer,
    FFNSpec,
    LinearAttentionSpec,
    MoESpec,
    ShortConvSpec,
    SSMSpec,
    TokenMixer,
)

CONTEXT = 2048
UBATCH = 512
PEAK_FLOPS = 160e9
BANDWIDTH = 18e9
MATMUL_EFF = 0.85
ATTN_EFF, SOFTMAX_PASSES = 0.4, 3
CONV_BYTES = 6.0
SSM_EFF, SSM_STEP_US = 0.12, 0.3
OVERLAP_LOSS = 0.2
LAUNCH_MS, FIXED_MS = 0.15, 8.0
Q4_0_BITS, Q6_K_BITS = 4.5, 6.5625
KV_PAD = 256
RUNTIME_MIB, ALLOC_SLACK = 36.0, 0.01
LOSS_FLOOR, LOSS_SCALE, LOSS_EXP = 1.75, 380.0, 0.33
RECALL, RECALL_RATE = 0.3, 7.0
ASPECT, ASPECT_BEST = 0.02, 64.0
INACTIVE_EXPERT_WORTH = 0.25
NOISE = (0.01, 0.04, 0.02)  # quality, TTFT, peak RSS


@dataclass(frozen=True)
class Device:
    """The two TTFT effects that make a device's time per unit of work depend on the genome."""

    tile: float = 384.0  # matmul efficiency x m / (m + tile), m a matrix's narrower side
    expert_efficiency: float = 0.6  # of a dense matmul's, for mixture-of-experts matrices


LAPTOP = Device()
PER_UNIT = Device(tile=0.0, expert_efficiency=1.0)


def _mixer_matrices(d: int, m: object) -> list[tuple[int, int]]:
    """(in, out) of each weight matrix of a token mixer."""
    if isinstance(m, AttentionSpec):
        q, kv = m.n_heads * m.head_dim, m.n_kv_heads * m.head_dim
        return [(d, q), (d, kv), (d, kv), (q, d)]
    if isinstance(m, ShortConvSpec):
        return [(d, 3 * d), (d, d)]
    if isinstance(m, SSMSpec):
        inner = m.n_heads * m.head_dim
        xbc = inner + 2 * m.n_groups * m.state
        return [(d, inner + xbc + m.n_heads), (inner, d)]
    if isinstance(m, LinearAttentionSpec):
        inner = m.n_heads * m.head_dim
        return [(d, inner)] * 3 + [(inner, d)]
    raise TypeError(f"no costs for token mixer {m!r}")


def _channel_matrices(d: int, c: object) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(matrices every token runs, expert matrices) of a channel mixer, as (in, out)."""
    if isinstance(c, FFNSpec):
        gated = c.kind == ChannelMixer.SWIGLU
        return [(d, c.ffn_dim)] * (2 if gated else 1) + [(c.ffn_dim, d)], []
    if isinstance(c, MoESpec):
        expert = [(d, c.expert_dim), (d, c.expert_dim), (c.expert_dim, d)]
        return [(d, c.n_experts)], expert * c.n_experts
    return [], []


def _matmul_s(device: Device, shape: tuple[int, int], tokens: float, eff: float = 1.0) -> float:
    m = min(shape)
    eff *= MATMUL_EFF * m / (m + device.tile)
    return 2.0 * shape[0] * shape[1] * tokens / (PEAK_FLOPS * eff)


def _cells(m: AttentionSpec, filled: int) -> int:
    return min(filled, m.window + UBATCH) if m.window else filled


def ttft_ms(spec: ArchSpec, device: Device = LAPTOP) -> float:
    d = spec.d_model
    passes = math.ceil(CONTEXT / UBATCH)
    stream = _active_weight_bytes(spec) / BANDWIDTH
    total_ms = FIXED_MS
    for p in range(passes):
        tokens = min(UBATCH, CONTEXT - p * UBATCH)
        filled = p * UBATCH + tokens
        compute = 0.0
        for layer in spec.layers:
            m, c = layer.mixer, layer.channel
            dense, experts = _channel_matrices(d, c)
            for shape in _mixer_matrices(d, m) + dense:
                compute += _matmul_s(device, shape, tokens)
            if isinstance(c, MoESpec):
                compute += sum(_matmul_s(device, s, tokens * c.top_k / c.n_experts,
                                         device.expert_efficiency)
                               for s in experts)
            if isinstance(m, AttentionSpec):
                scores = tokens * _cells(m, filled) * m.n_heads
                compute += 4.0 * m.head_dim * scores / (PEAK_FLOPS * ATTN_EFF)
                compute += SOFTMAX_PASSES * 4.0 * scores / BANDWIDTH
            elif isinstance(m, ShortConvSpec):
                compute += tokens * 3 * d * (m.kernel + 1) * CONV_BYTES / BANDWIDTH
            elif isinstance(m, SSMSpec):
                inner = m.n_heads * m.head_dim
                compute += tokens * 5.0 * inner * m.state / (PEAK_FLOPS * SSM_EFF)
                compute += tokens * SSM_STEP_US * 1e-6
            elif isinstance(m, LinearAttentionSpec):
                compute += tokens * 4.0 * m.n_heads * m.head_dim**2 / (PEAK_FLOPS * ATTN_EFF)
        if p == passes - 1:
            compute += _matmul_s(device, (d, spec.vocab_size), 1)
        total_ms += 1e3 * (max(compute, stream) + OVERLAP_LOSS * min(compute, stream))
        total_ms += LAUNCH_MS * spec.n_layers
    return total_ms


def _active_weight_bytes(spec: ArchSpec) -> float:
    d, n = spec.d_model, 0.0
    for layer in spec.layers:
        dense, experts = _channel_matrices(d, layer.channel)
        n += sum(a * b for a, b in _mixer_matrices(d, layer.mixer) + dense)
        if isinstance(layer.channel, MoESpec):
            n += sum(a * b for a, b in experts) * layer.channel.top_k / layer.channel.n_experts
    return n * Q4_0_BITS / 8


def _weight_bytes(spec: ArchSpec) -> float:
    d = spec.d_model
    matrices = spec.vocab_size * d * Q4_0_BITS / 8
    if not spec.tie_embeddings:
        matrices += spec.vocab_size * d * Q6_K_BITS / 8
    vectors = 4.0 * d  # the final norm
    owners: set[tuple[int, int]] = set()
    for layer in spec.layers:
        m, c = layer.mixer, layer.channel
        dense, experts = _channel_matrices(d, c)
        matrices += sum(a * b for a, b in dense + experts) * Q4_0_BITS / 8
        vectors += 4.0 * 2 * d  # two norms
        if layer.share_group and (layer.share_group, layer.operator) in owners:
            continue
        owners.add((layer.share_group, layer.operator))
        matrices += sum(a * b for a, b in _mixer_matrices(d, m)) * Q4_0_BITS / 8
        if isinstance(m, ShortConvSpec):
            vectors += 4.0 * d * m.kernel
        elif isinstance(m, SSMSpec):
            inner = m.n_heads * m.head_dim
            vectors += 4.0 * ((inner + 2 * m.n_groups * m.state) * m.conv_kernel + 3 * m.n_heads)
    return matrices + vectors


def peak_rss_mib(spec: ArchSpec) -> float:
    d = spec.d_model
    padded = math.ceil(CONTEXT / KV_PAD) * KV_PAD
    kv = state = 0.0
    cells = heads = 0
    widest = 3 * d
    for layer in spec.layers:
        m, c = layer.mixer, layer.channel
        widest = max([widest, *(out for _, out in _mixer_matrices(d, m))])
        if isinstance(c, FFNSpec):
            widest = max(widest, 2 * c.ffn_dim)
        elif isinstance(c, MoESpec):
            widest = max(widest, 2 * c.expert_dim * c.top_k)
        if isinstance(m, AttentionSpec):
            n = _cells(m, padded)
            kv += 2 * 2 * m.n_kv_heads * m.head_dim * n
            cells, heads = max(cells, n), max(heads, m.n_heads)
        elif isinstance(m, ShortConvSpec):
            state += 4.0 * d * (m.kernel - 1)
        elif isinstance(m, SSMSpec):
            inner = m.n_heads * m.head_dim
            state += 4.0 * ((inner + 2 * m.n_groups * m.state) * (m.conv_kernel - 1)
                            + inner * m.state)
        elif isinstance(m, LinearAttentionSpec):
            state += 4.0 * m.n_heads * m.head_dim * (m.head_dim + 1)
    compute = 4.0 * UBATCH * (2 * d + widest) + 4.0 * UBATCH * cells * heads
    compute += 4.0 * spec.vocab_size
    weights = _weight_bytes(spec)
    return (weights * (1 + ALLOC_SLACK) + kv + state + compute) / 2**20 + RUNTIME_MIB


def quality(spec: ArchSpec) -> float:
    d, n = spec.d_model, 0.0
    recall = 0.0
    for layer in spec.layers:
        m, c = layer.mixer, layer.channel
        dense, experts = _channel_matrices(d, c)
        n += sum(a * b for a, b in _mixer_matrices(d, m) + dense)
        if isinstance(c, MoESpec):
            share = c.top_k / c.n_experts
            worth = share + INACTIVE_EXPERT_WORTH * (1 - share)
            n += sum(a * b for a, b in experts) * worth
        recall += {TokenMixer.ATTENTION: 1.0, TokenMixer.SWA: 0.5, TokenMixer.SSM: 0.2}.get(
            m.kind, 0.0)
    depth = max(spec.n_layers, 1)
    aspect = math.log(d / depth / ASPECT_BEST)
    return (LOSS_FLOOR + LOSS_SCALE * max(n, 1.0) ** -LOSS_EXP
            + RECALL * math.exp(-RECALL_RATE * recall / depth) + ASPECT * aspect**2)


def measure(spec: ArchSpec, genome_id: str, device: Device = LAPTOP) -> np.ndarray:
    """(quality, TTFT ms, peak RSS MiB) at ``CONTEXT``, with the genome's own noise."""
    seed = int.from_bytes(hashlib.sha256(f"oracle:{genome_id}".encode()).digest()[:8], "big")
    noise = np.exp(np.array(NOISE) * np.random.default_rng(seed).standard_normal(3))
    return np.array([quality(spec), ttft_ms(spec, device), peak_rss_mib(spec)]) * noise

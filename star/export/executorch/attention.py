"""Softmax GQA attention (full or sliding window) with a fixed-size KV cache.

The weights are the ``star.nn.Attention`` module's own; only the cache and the attention
arithmetic differ from its incremental form:

- keys and values are cached as (KV, slots, head_dim): a write is one contiguous row per head,
  the slice of the first L slots is one block per head, and q @ k^T is XNNPACK's batched matmul
  with a transposed operand (measured: 2.5x faster per decode step than caching keys
  transposed, whose strided writes and slices cost more than they save);
- query heads are grouped under their KV head, (KV, G*T, head_dim), so GQA never repeats keys;
- the new keys/values are written with ``index_copy_`` at their slots (reinplaced on export);
- full attention reads the first L = input_pos + T slots, L being the length of the
  ``kv_positions`` input (a dynamic dimension), so decode at depth C costs O(C), not O(max
  context);
- sliding-window attention keeps a ring of ``window - 1 + chunk`` slots (constant memory): slot j
  holds the latest position p <= last with p = j (mod slots); it is visible to the query at q
  iff 0 <= q - p < window.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from star.export.executorch.norm import static_norm
from star.export.executorch.step import Step, rope_inv_freq
from star.nn.attention import Attention
from star.nn.rope import rotate_half


class StaticAttention(nn.Module):
    """Decode/prefill form of ``op`` for contexts up to ``max_context`` and chunks of ``chunk``."""

    STATE = ("k_cache", "v_cache")

    def __init__(self, op: Attention, *, max_context: int, chunk: int) -> None:
        super().__init__()
        spec = op.spec
        self.op = op
        if spec.qk_norm:
            self.q_norm = static_norm(op.q_norm)
            self.k_norm = static_norm(op.k_norm)
        self.window = spec.window
        # A ring only pays off when it is smaller than the plain cache.
        self.ring = 0 < spec.window and spec.window - 1 + chunk <= max_context
        # One spare slot in the plain cache: slicing [:L] with L == slots would be specialised
        # away by torch.export (a no-op slice), and L never exceeds max_context.
        self.slots = spec.window - 1 + chunk if self.ring else max_context + 1
        kv, hd = spec.n_kv_heads, spec.head_dim
        self.register_buffer("inv_freq", rope_inv_freq(hd, op.rope_theta), persistent=False)
        self.register_buffer("k_cache", torch.zeros(kv, self.slots, hd), persistent=False)
        self.register_buffer("v_cache", torch.zeros(kv, self.slots, hd), persistent=False)
        self.inv_freq: torch.Tensor
        self.k_cache: torch.Tensor
        self.v_cache: torch.Tensor

    def forward(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        """x (1, T, d) at ``step.positions`` -> (1, T, d); writes this call's keys/values."""
        op, spec = self.op, self.op.spec
        t = x.shape[1]
        h, kv, hd = spec.n_heads, spec.n_kv_heads, spec.head_dim
        groups = h // kv
        q = op.q_proj(x).view(1, t, h, hd)
        k = op.k_proj(x).view(1, t, kv, hd)
        v = op.v_proj(x).view(t, kv, hd)
        if spec.qk_norm:
            q = self.q_norm(q)
            k = self.k_norm(k)
        cos, sin = step.rope(self.inv_freq, op.rope_theta)  # (1, T, 1, hd)
        q = (q * cos + rotate_half(q) * sin).view(t, h, hd)
        k = (k * cos + rotate_half(k) * sin).view(t, kv, hd)
        slots = torch.remainder(step.positions, self.slots) if self.ring else step.positions
        self.k_cache.index_copy_(1, slots, k.transpose(0, 1))  # (KV, T, hd) at slots
        self.v_cache.index_copy_(1, slots, v.transpose(0, 1))
        if self.ring:
            keys, values = self.k_cache, self.v_cache
        else:
            n = step.kv_positions.shape[0]
            keys, values = self.k_cache[:, :n], self.v_cache[:, :n]  # (KV, L, hd) each
        (mask,) = step.memo(
            ("mask", self.ring, self.slots, self.window, groups), lambda: (self.mask(step, groups),)
        )
        qg = q.view(t, kv, groups, hd).permute(1, 2, 0, 3).reshape(kv, groups * t, hd)
        scores = torch.bmm(qg, keys.transpose(1, 2)) * (1.0 / math.sqrt(hd)) + mask  # (KV, G*T, L)
        y = torch.bmm(torch.softmax(scores, dim=-1), values)  # (KV, G*T, hd)
        y = y.view(kv, groups, t, hd).permute(2, 0, 1, 3).reshape(1, t, h * hd)
        return op.o_proj(y)

    def mask(self, step: Step, groups: int) -> torch.Tensor:
        """Additive mask (G*T, L): 0 where the query (row g*T + t) may see the key, else -inf."""
        if self.ring:
            last = step.positions[-1:]  # (1,)
            slot_ids = torch.arange(self.slots, dtype=torch.int64)
            key_pos = last - torch.remainder(last - slot_ids, self.slots)  # (slots,)
        else:
            key_pos = step.kv_positions
        query_pos = step.positions.repeat(groups)  # (G*T,)
        dist = query_pos[:, None] - key_pos[None, :]  # (G*T, L)
        visible = dist >= 0
        if self.window > 0:
            visible = visible & (dist < self.window) & (key_pos >= 0)[None, :]
        return torch.where(visible, 0.0, -math.inf)

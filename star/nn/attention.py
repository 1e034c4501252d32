"""GQA softmax attention, full or sliding-window, with optional QK-norm.

Matches HF ``Lfm2Attention`` / llama.cpp ``lfm2`` and ``qwen3``: q/k/v projections without bias,
per-head RMSNorm on q and k BEFORE RoPE, rotate-half RoPE, scale 1/sqrt(head_dim), causal.
``n_heads * head_dim`` may differ from d_model (o_proj maps it back).
"""

from __future__ import annotations

import math
from typing import Any, Unpack

import torch
import torch.nn.functional as F
from torch import nn

from star.genome.spec import AttentionSpec
from star.nn.cache import KVCache
from star.nn.factory import Factory
from star.nn.norm import RMSNorm
from star.nn.rope import apply_rope, rope_cos_sin

# Below this head width torch's CPU flash-attention kernel is 4-6x slower in bf16 than in fp32
# (forward + backward, 1 thread): there bf16 attention runs in fp32 (``sdpa``)
FP32_ATTENTION_BELOW_HEAD_DIM = 64


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """``F.scaled_dot_product_attention``, in fp32 for bf16 on CPU at small head widths.

    Measured (B 16, T 32, head_dim 16, 1 thread): bf16 flash forward+backward 3.65 ms, fp32 flash
    0.39 ms, bf16 math 0.63 ms; at head_dim 64 bf16 and fp32 tie. The proxy trains at head_dim 16
    under bf16 autocast, where attention was a quarter of each step. fp32 is also the more exact
    choice; the result is cast back to the input dtype.
    """
    bf16 = q.dtype == torch.bfloat16 or (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )
    small = q.shape[-1] < FP32_ATTENTION_BELOW_HEAD_DIM
    if q.device.type != "cpu" or not bf16 or not small:
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    with torch.autocast("cpu", enabled=False):
        y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs)
    return y.to(q.dtype)


class Attention(nn.Module):
    """Causal GQA attention; ``spec.window`` > 0: key j visible to query t iff 0 <= t-j < window."""

    def __init__(
        self,
        spec: AttentionSpec,
        d_model: int,
        *,
        rope_theta: float,
        norm_eps: float,
        **factory: Unpack[Factory],
    ) -> None:
        super().__init__()
        if spec.n_heads % spec.n_kv_heads:
            raise ValueError(f"n_heads {spec.n_heads} not a multiple of n_kv {spec.n_kv_heads}")
        self.spec = spec
        self.rope_theta = rope_theta
        self._rope_key: tuple[object, ...] | None = None
        self._rope_tables: tuple[torch.Tensor, torch.Tensor] = (torch.empty(0), torch.empty(0))
        self.q_proj = nn.Linear(d_model, spec.q_dim, bias=False, **factory)
        self.k_proj = nn.Linear(d_model, spec.kv_dim, bias=False, **factory)
        self.v_proj = nn.Linear(d_model, spec.kv_dim, bias=False, **factory)
        self.o_proj = nn.Linear(spec.q_dim, d_model, bias=False, **factory)
        if spec.qk_norm:
            self.q_norm = RMSNorm(spec.head_dim, norm_eps, **factory)
            self.k_norm = RMSNorm(spec.head_dim, norm_eps, **factory)

    def _rope(
        self, pos: int, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE tables, kept for the last (start, length, device, dtype): training asks for the
        same ones every step, so they are computed once per run instead of once per step."""
        key = (pos, len(positions), positions.device, dtype)
        if self._rope_key != key:
            self._rope_tables = rope_cos_sin(positions, self.spec.head_dim, self.rope_theta, dtype)
            self._rope_key = key
        return self._rope_tables

    def new_state(self, batch_size: int) -> KVCache:
        w = self.k_proj.weight
        empty = torch.zeros(
            batch_size, self.spec.n_kv_heads, 0, self.spec.head_dim, device=w.device, dtype=w.dtype
        )
        return KVCache(k=empty, v=empty.clone(), window=self.spec.window)

    def forward(self, x: torch.Tensor, *, pos: int, state: KVCache | None = None) -> torch.Tensor:
        """x (B, T, d) at absolute positions pos .. pos+T-1 -> (B, T, d)."""
        spec = self.spec
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, spec.n_heads, spec.head_dim)  # (B, T, H, hd)
        k = self.k_proj(x).view(b, t, spec.n_kv_heads, spec.head_dim)  # (B, T, KV, hd)
        v = self.v_proj(x).view(b, t, spec.n_kv_heads, spec.head_dim)
        if spec.qk_norm:
            q = self.q_norm(q)
            k = self.k_norm(k)
        positions = torch.arange(pos, pos + t, device=x.device)
        cos, sin = self._rope(pos, positions, q.dtype)
        q = apply_rope(q, cos, sin).transpose(1, 2)  # (B, H, T, hd)
        k = apply_rope(k, cos, sin).transpose(1, 2)  # (B, KV, T, hd)
        v = v.transpose(1, 2)  # (B, KV, T, hd)
        if state is not None:
            k, v = state.update(k, v)  # (B, KV, S, hd), S = cached + T
        s = k.shape[2]
        scale = 1.0 / math.sqrt(spec.head_dim)
        gqa = spec.n_heads != spec.n_kv_heads
        if s == t and spec.window <= 0:
            y = sdpa(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
        else:
            key_pos = torch.arange(pos + t - s, pos + t, device=x.device)  # (S,)
            dist = positions[:, None] - key_pos[None, :]  # (T, S)
            mask = dist >= 0
            if spec.window > 0:
                mask = mask & (dist < spec.window)
            y = sdpa(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
        y = y.transpose(1, 2).reshape(b, t, spec.q_dim)  # (B, T, H*hd)
        return self.o_proj(y)

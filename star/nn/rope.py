"""Rotary position embedding, rotate-half (NEOX) style.

NEOX style pairs channel i with channel i + head_dim/2 (not 2i with 2i+1): it is what HF LFM2,
``qwen2``/``qwen3`` and llama.cpp's ``lfm2`` use, so our attention exports without a permutation.
Positions are passed explicitly so that incremental decoding can start at an offset.
"""

from __future__ import annotations

import torch


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (T, head_dim) for integer ``positions`` of shape (T,).

    Frequencies are computed in float32 exactly as HF does, then cast to ``dtype``.
    """
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float()
    inv_freq = 1.0 / (theta ** (exponent / head_dim))  # (hd/2,)
    freqs = positions.float()[:, None] * inv_freq[None, :]  # (T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hd)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape (B, T, n_heads, hd) by tables of shape (T, hd)."""
    cos = cos[None, :, None, :]  # (1, T, 1, hd)
    sin = sin[None, :, None, :]
    return x * cos + rotate_half(x) * sin

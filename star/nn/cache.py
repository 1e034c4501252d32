"""Decode-state containers for incremental decoding.

Each token mixer owns one state object per layer (layers that share weights still have their own
state). States are mutated in place by the mixer's forward pass; ``ModelCache`` holds them all and
the absolute position of the next token. Recurrent states are kept in float32 so that long decodes
in bf16 do not drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class KVCache:
    """Keys/values after RoPE, (B, n_kv_heads, S, head_dim).

    With ``window`` > 0 (sliding-window attention) only the last ``window - 1`` positions are
    kept: no later query can see anything older, so the cache has constant size.
    """

    k: torch.Tensor
    v: torch.Tensor
    window: int = 0

    @property
    def length(self) -> int:
        return self.k.shape[2]

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append new (B, KV, T, hd) keys/values; return all keys/values visible this step."""
        k_all = torch.cat((self.k, k), dim=2)  # (B, KV, S + T, hd)
        v_all = torch.cat((self.v, v), dim=2)
        keep = k_all.shape[2] if self.window <= 0 else min(k_all.shape[2], self.window - 1)
        self.k = k_all[:, :, k_all.shape[2] - keep :]
        self.v = v_all[:, :, v_all.shape[2] - keep :]
        return k_all, v_all


@dataclass
class ConvState:
    """The last ``kernel - 1`` conv inputs, (B, channels, kernel - 1); zeros = left padding."""

    conv: torch.Tensor


@dataclass
class LinearAttentionState:
    """Running sums of linear attention: S (B, H, hd, hd) = sum phi(k) v^T, z (B, H, hd)."""

    s: torch.Tensor
    z: torch.Tensor


@dataclass
class SSMState:
    """Mamba-2 decode state: conv inputs (B, conv_dim, K - 1) and SSM state (B, H, P, N)."""

    conv: torch.Tensor
    ssm: torch.Tensor


LayerState = KVCache | ConvState | LinearAttentionState | SSMState


@dataclass
class ModelCache:
    """One state per layer plus the absolute position of the next token."""

    layers: list[LayerState] = field(default_factory=list)
    position: int = 0

    def nbytes(self) -> int:
        """Bytes held by all states (the cache-size objective, measured)."""
        total = 0
        for state in self.layers:
            for value in vars(state).values():
                if isinstance(value, torch.Tensor):
                    total += value.numel() * value.element_size()
        return total

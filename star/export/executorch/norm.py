"""RMSNorm forms that XNNPACK takes whole.

XNNPACK averages only over the two inner dims of a 4-D tensor (global average pooling), so a
``mean(-1)`` over (1, T, d) stays outside the delegate and splits the graph at every norm (one
delegate call and one lowering pass per piece). Viewing the squares as (1, rows, d, 1) keeps the
same arithmetic inside. Weights and eps are the star.nn module's own.
"""

from __future__ import annotations

import torch
from torch import nn

from star.nn.norm import GroupedRMSNorm, LayerNorm, RMSNorm


def _rms_scale(x: torch.Tensor, eps: float) -> torch.Tensor:
    """1 / rms(x) over the last dim, shape (..., 1), float32."""
    width = x.shape[-1]
    squares = x.float().pow(2).reshape(1, -1, width, 1)  # (1, rows, width, 1)
    mean = squares.mean(dim=(2, 3), keepdim=True)  # (1, rows, 1, 1)
    return torch.rsqrt(mean + eps).reshape(*x.shape[:-1], 1)


class StaticRMSNorm(nn.Module):
    def __init__(self, norm: RMSNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm.weight * (x.float() * _rms_scale(x, self.norm.eps)).to(x.dtype)


class StaticGroupedRMSNorm(nn.Module):
    def __init__(self, norm: GroupedRMSNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouped = x.float().unflatten(-1, (self.norm.groups, -1))  # (..., G, C/G)
        y = (grouped * _rms_scale(grouped, self.norm.eps)).flatten(-2)
        return self.norm.weight * y.to(x.dtype)


def static_norm(norm: nn.Module) -> nn.Module:
    """The delegate-friendly form of a star.nn norm (LayerNorm stays as it is)."""
    if isinstance(norm, GroupedRMSNorm):
        return StaticGroupedRMSNorm(norm)
    if isinstance(norm, RMSNorm):
        return StaticRMSNorm(norm)
    if isinstance(norm, LayerNorm):
        return norm
    raise TypeError(f"no static form for norm {type(norm).__name__}")

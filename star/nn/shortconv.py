"""LFM2 gated short convolution (HF ``Lfm2ShortConv``, llama.cpp ``lfm2`` shortconv).

``B, C, x = split(in_proj(h), 3)`` in that order, ``u = B * x``, a causal depthwise conv of
kernel L over u, ``y = out_proj(C * conv(u))``. The decode state is the last L-1 columns of u,
so decoding costs O(d * L) per token with a constant-size state.
"""

from __future__ import annotations

from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn

from star.genome.spec import ShortConvSpec
from star.nn.cache import ConvState
from star.nn.factory import Factory


class ShortConv(nn.Module):
    """Gated short conv of width d_model; weights named exactly as HF (``conv.weight`` (d,1,L))."""

    def __init__(self, spec: ShortConvSpec, d_model: int, **factory: Unpack[Factory]) -> None:
        super().__init__()
        self.spec = spec
        self.d_model = d_model
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=False, **factory)
        self.conv = nn.Conv1d(
            d_model,
            d_model,
            spec.kernel,
            groups=d_model,
            bias=False,
            padding=0,
            **factory,
        )
        self.out_proj = nn.Linear(d_model, d_model, bias=False, **factory)

    def new_state(self, batch_size: int) -> ConvState:
        w = self.conv.weight
        conv = torch.zeros(
            batch_size, self.d_model, self.spec.kernel - 1, device=w.device, dtype=w.dtype
        )
        return ConvState(conv=conv)

    def forward(self, x: torch.Tensor, *, pos: int, state: ConvState | None = None) -> torch.Tensor:
        """x (B, T, d) -> (B, T, d). ``pos`` is unused: the conv state carries the history."""
        del pos
        bcx = self.in_proj(x).transpose(1, 2)  # (B, 3d, T)
        b_gate, c_gate, xs = bcx.chunk(3, dim=1)  # each (B, d, T)
        u = b_gate * xs  # (B, d, T)
        history = self.spec.kernel - 1
        if state is not None:
            u_full = torch.cat((state.conv.to(u.dtype), u), dim=2)  # (B, d, L-1+T)
            state.conv = u_full[:, :, u_full.shape[2] - history :].clone()
            v = F.conv1d(u_full, self.conv.weight, groups=self.d_model)  # (B, d, T)
        else:
            # zero history = start of sequence; the conv pads both ends, the first T outputs
            # are the causal ones (no padded copy of u)
            t = u.shape[2]
            v = F.conv1d(u, self.conv.weight, padding=history, groups=self.d_model)[..., :t]
        y = (c_gate * v).transpose(1, 2)  # (B, T, d)
        return self.out_proj(y)

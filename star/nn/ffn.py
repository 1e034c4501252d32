"""Dense channel mixers: SwiGLU (LFM2, llama) and squared-ReLU MLP (nemotron_h)."""

from __future__ import annotations

from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn

from star.genome.spec import FFNSpec
from star.nn.factory import Factory


class SwiGLU(nn.Module):
    """``down(silu(gate x) * up x)``; gate/up/down are GGUF ffn_gate/ffn_up/ffn_down (w1/w3/w2)."""

    def __init__(self, spec: FFNSpec, d_model: int, **factory: Unpack[Factory]) -> None:
        super().__init__()
        self.spec = spec
        self.gate = nn.Linear(d_model, spec.ffn_dim, bias=False, **factory)
        self.up = nn.Linear(d_model, spec.ffn_dim, bias=False, **factory)
        self.down = nn.Linear(spec.ffn_dim, d_model, bias=False, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))  # (B, T, d)


class MLP(nn.Module):
    """Ungated ``down(relu(up x)^2)``: two matrices instead of three at the same width."""

    def __init__(self, spec: FFNSpec, d_model: int, **factory: Unpack[Factory]) -> None:
        super().__init__()
        self.spec = spec
        self.up = nn.Linear(d_model, spec.ffn_dim, bias=False, **factory)
        self.down = nn.Linear(spec.ffn_dim, d_model, bias=False, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)).square())  # (B, T, d)

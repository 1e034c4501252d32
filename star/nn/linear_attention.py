"""Causal linear attention with feature map elu(x)+1 (Katharopoulos et al. 2020).

Per head: ``S_t = S_{t-1} + phi(k_t) v_t^T``, ``z_t = z_{t-1} + phi(k_t)``,
``y_t = phi(q_t)^T S_t / (phi(q_t) . z_t + 1e-6)``. Training uses a chunked form (quadratic
within a chunk, recurrent across chunks) that equals the recurrence up to float rounding; the
decode state (S, z) has constant size, which is what makes the operator cheap on device.
"""

from __future__ import annotations

from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn

from star.genome.spec import LinearAttentionSpec
from star.nn.cache import LinearAttentionState
from star.nn.factory import Factory

DENOM_EPS = 1e-6
CHUNK = 64


def feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1: positive, so the denominator never vanishes."""
    return F.elu(x) + 1.0


def recurrent_linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The recurrence one token at a time (the reference). Same contract as the chunked form."""
    outs = []
    for i in range(q.shape[2]):
        s = s + k[:, :, i, :, None] * v[:, :, i, None, :]  # (B, H, hd, hd)
        z = z + k[:, :, i]  # (B, H, hd)
        num = (q[:, :, i, None, :] @ s).squeeze(-2)  # (B, H, hd)
        den = (q[:, :, i] * z).sum(-1, keepdim=True)  # (B, H, 1)
        outs.append(num / (den + DENOM_EPS))
    return torch.stack(outs, dim=2), s, z


def chunked_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    z: torch.Tensor,
    chunk: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the recurrence from state (s, z) over features q, k (B, H, T, hd) and values v.

    Returns outputs (B, H, T, hd) and the final (s (B, H, hd, hd), z (B, H, hd)).
    """
    outs = []
    for start in range(0, q.shape[2], chunk):
        qc = q[:, :, start : start + chunk]  # (B, H, c, hd)
        kc = k[:, :, start : start + chunk]
        vc = v[:, :, start : start + chunk]
        scores = (qc @ kc.transpose(-1, -2)).tril()  # (B, H, c, c), j <= t only
        num = qc @ s + scores @ vc  # (B, H, c, hd)
        den = (qc * z[:, :, None, :]).sum(-1) + scores.sum(-1)  # (B, H, c)
        outs.append(num / (den[..., None] + DENOM_EPS))
        s = s + kc.transpose(-1, -2) @ vc
        z = z + kc.sum(dim=2)
    return torch.cat(outs, dim=2), s, z


class LinearAttention(nn.Module):
    """Multi-head causal linear attention; q/k/v/o projections without bias."""

    def __init__(self, spec: LinearAttentionSpec, d_model: int, **factory: Unpack[Factory]) -> None:
        super().__init__()
        self.spec = spec
        self.chunk = CHUNK  # tokens per chunk of the parallel form; 0 = plain recurrence
        self.q_proj = nn.Linear(d_model, spec.inner_dim, bias=False, **factory)
        self.k_proj = nn.Linear(d_model, spec.inner_dim, bias=False, **factory)
        self.v_proj = nn.Linear(d_model, spec.inner_dim, bias=False, **factory)
        self.o_proj = nn.Linear(spec.inner_dim, d_model, bias=False, **factory)

    def new_state(self, batch_size: int) -> LinearAttentionState:
        h, hd = self.spec.n_heads, self.spec.head_dim
        device = self.q_proj.weight.device
        s = torch.zeros(batch_size, h, hd, hd, device=device, dtype=torch.float32)
        z = torch.zeros(batch_size, h, hd, device=device, dtype=torch.float32)
        return LinearAttentionState(s=s, z=z)

    def forward(
        self, x: torch.Tensor, *, pos: int, state: LinearAttentionState | None = None
    ) -> torch.Tensor:
        """x (B, T, d) -> (B, T, d). ``pos`` is unused: the state carries the history."""
        del pos
        b, t, _ = x.shape
        h, hd = self.spec.n_heads, self.spec.head_dim

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, h, hd).transpose(1, 2).float()  # (B, H, T, hd)

        q = feature_map(heads(self.q_proj(x)))
        k = feature_map(heads(self.k_proj(x)))
        v = heads(self.v_proj(x))
        start = state if state is not None else self.new_state(b)
        # The scan stays fp32 under autocast: decays compound over the sequence.
        with torch.autocast(x.device.type, enabled=False):
            if self.chunk > 0:
                y, s, z = chunked_linear_attention(q, k, v, start.s, start.z, self.chunk)
            else:
                y, s, z = recurrent_linear_attention(q, k, v, start.s, start.z)
        if state is not None:
            state.s, state.z = s, z
        y = y.transpose(1, 2).reshape(b, t, h * hd).to(x.dtype)  # (B, T, H*hd)
        return self.o_proj(y)

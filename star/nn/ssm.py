"""Mamba-2 selective SSM with exactly llama.cpp's ``mamba2`` math (see FACTS.md).

in_proj -> z (d_inner), xBC (d_inner + 2GN), dt (H); causal depthwise conv (with bias) over xBC,
SiLU; split x, B, C; ``dt = softplus(dt + dt_bias)``; ``A = -exp(A_log)``; per head h in group
g = h // (H/G): ``S = S * exp(dt A) + (x dt) outer B[g]``, ``y = S . C[g] + D x``; then
``y * silu(z)``, grouped RMSNorm, out_proj. Training runs a chunked (SSD) form that equals the
sequential recurrence up to float rounding; single-token decode runs the recurrence itself.
"""

from __future__ import annotations

import math
from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn

from star.genome.spec import SSMSpec
from star.nn.cache import SSMState
from star.nn.factory import Factory
from star.nn.norm import GroupedRMSNorm

CHUNK = 64


def ssm_scan_sequential(
    x: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence, one step at a time (the reference; used for decode).

    x (B, T, H, P), dt (B, T, H), a (H,), b and c (B, T, H, N) already expanded from groups to
    heads, state (B, H, P, N). Returns y (B, T, H, P) and the final state.
    """
    ys = []
    for i in range(x.shape[1]):
        decay = torch.exp(dt[:, i] * a)  # (B, H)
        xdt = x[:, i] * dt[:, i, :, None]  # (B, H, P)
        state = state * decay[..., None, None] + xdt[..., None] * b[:, i, :, None, :]
        ys.append((state @ c[:, i, :, :, None]).squeeze(-1))  # (B, H, P)
    return torch.stack(ys, dim=1), state


def _segment_sums(a: torch.Tensor) -> torch.Tensor:
    """seg[..., t, s] = sum_{r=s+1..t} a[..., r] for s <= t, -inf above the diagonal.

    Built by a masked cumsum rather than differences of a cumsum, which cancel badly.
    a (..., l) -> (..., l, l).
    """
    size = a.shape[-1]
    strict = torch.ones(size, size, dtype=torch.bool, device=a.device).tril(-1)
    rep = a[..., :, None].expand(*a.shape, size).masked_fill(~strict, 0.0)  # rep[r, s] = a[r]
    seg = rep.cumsum(dim=-2)
    causal = torch.ones(size, size, dtype=torch.bool, device=a.device).tril()
    return seg.masked_fill(~causal, -math.inf)


def ssm_scan_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    state: torch.Tensor,
    chunk: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``ssm_scan_sequential``: quadratic within chunks, recurrent across."""
    ys = []
    for start in range(0, x.shape[1], chunk):
        xc = x[:, start : start + chunk]  # (B, l, H, P)
        dtc = dt[:, start : start + chunk]  # (B, l, H)
        bc = b[:, start : start + chunk]  # (B, l, H, N)
        cc = c[:, start : start + chunk]
        adt = (dtc * a).transpose(1, 2)  # (B, H, l)
        decay = torch.exp(_segment_sums(adt))  # (B, H, l, l): prod of exp(dt A) over (s, t]
        xdt = xc * dtc[..., None]  # (B, l, H, P)
        scores = torch.einsum("bthn,bshn->bhts", cc, bc) * decay  # (B, H, l, l)
        y_diag = torch.einsum("bhts,bshp->bthp", scores, xdt)
        into = torch.exp(adt.cumsum(dim=-1)).transpose(1, 2)  # (B, l, H): decay of old state
        y_off = torch.einsum("bthn,bhpn->bthp", cc, state) * into[..., None]
        ys.append(y_diag + y_off)
        to_end = decay[:, :, -1, :].transpose(1, 2)  # (B, l, H): decay from s to chunk end
        state = state * into[:, -1, :, None, None] + torch.einsum(
            "bshp,bshn->bhpn", xdt * to_end[..., None], bc
        )
    return torch.cat(ys, dim=1), state


class SSM(nn.Module):
    """Mamba-2 mixer. Parameter names follow HF Mamba2 / the GGUF exporter contract."""

    def __init__(
        self, spec: SSMSpec, d_model: int, *, norm_eps: float, **factory: Unpack[Factory]
    ) -> None:
        super().__init__()
        if spec.n_heads % spec.n_groups:
            raise ValueError(f"SSM n_heads {spec.n_heads} not a multiple of {spec.n_groups}")
        self.spec = spec
        self.chunk = CHUNK  # 0 = always run the sequential recurrence
        self.in_proj = nn.Linear(d_model, spec.in_proj_dim, bias=False, **factory)
        self.conv1d = nn.Conv1d(
            spec.conv_dim,
            spec.conv_dim,
            spec.conv_kernel,
            groups=spec.conv_dim,
            bias=True,
            **factory,
        )
        self.dt_bias = nn.Parameter(torch.zeros(spec.n_heads, **factory))
        self.A_log = nn.Parameter(torch.zeros(spec.n_heads, **factory))
        self.D = nn.Parameter(torch.ones(spec.n_heads, **factory))
        self.norm = GroupedRMSNorm(spec.d_inner, spec.n_groups, norm_eps, **factory)
        self.out_proj = nn.Linear(spec.d_inner, d_model, bias=False, **factory)

    def new_state(self, batch_size: int) -> SSMState:
        spec = self.spec
        w = self.conv1d.weight
        conv = torch.zeros(
            batch_size, spec.conv_dim, spec.conv_kernel - 1, device=w.device, dtype=w.dtype
        )
        ssm = torch.zeros(
            batch_size,
            spec.n_heads,
            spec.head_dim,
            spec.state,
            device=w.device,
            dtype=torch.float32,
        )
        return SSMState(conv=conv, ssm=ssm)

    def forward(self, x: torch.Tensor, *, pos: int, state: SSMState | None = None) -> torch.Tensor:
        """x (B, T, d) -> (B, T, d). ``pos`` is unused: the state carries the history."""
        del pos
        spec = self.spec
        bsz, t, _ = x.shape
        h, p, n, g = spec.n_heads, spec.head_dim, spec.state, spec.n_groups
        z, xbc, dt = self.in_proj(x).split([spec.d_inner, spec.conv_dim, h], dim=-1)
        xbc = xbc.transpose(1, 2)  # (B, conv_dim, T)
        history = spec.conv_kernel - 1
        if state is not None:
            full = torch.cat((state.conv.to(xbc.dtype), xbc), dim=2)  # (B, conv_dim, K-1+T)
            state.conv = full[:, :, full.shape[2] - history :].clone()
        else:
            full = F.pad(xbc, (history, 0))
        xbc = F.silu(F.conv1d(full, self.conv1d.weight, self.conv1d.bias, groups=spec.conv_dim))
        xs, bs, cs = xbc.transpose(1, 2).split([spec.d_inner, g * n, g * n], dim=-1)
        xs = xs.reshape(bsz, t, h, p).float()  # (B, T, H, P)
        bs = bs.reshape(bsz, t, g, n).float().repeat_interleave(h // g, dim=2)  # (B, T, H, N)
        cs = cs.reshape(bsz, t, g, n).float().repeat_interleave(h // g, dim=2)
        dt = F.softplus(dt.float() + self.dt_bias.float())  # (B, T, H)
        a = -torch.exp(self.A_log.float())  # (H,)
        s0 = state.ssm if state is not None else self.new_state(bsz).ssm
        # The scan stays fp32 under autocast: decays compound over the sequence.
        with torch.autocast(x.device.type, enabled=False):
            if self.chunk > 0 and t > 1:
                y, s1 = ssm_scan_chunked(xs, dt, a, bs, cs, s0, self.chunk)
            else:
                y, s1 = ssm_scan_sequential(xs, dt, a, bs, cs, s0)
        if state is not None:
            state.ssm = s1
        y = y + xs * self.D.float()[:, None]  # (B, T, H, P)
        y = y.reshape(bsz, t, spec.d_inner).to(x.dtype) * F.silu(z)
        return self.out_proj(self.norm(y))

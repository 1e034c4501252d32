"""Recurrent token mixers with constant-size state buffers: short conv, linear attention, SSM.

Each form reuses the ``star.nn`` module's weights and its own recurrence helpers (the chunked
linear-attention and SSD scans run as one chunk of T tokens; a single decode token runs the
plain recurrence), so the arithmetic is star.nn's. The state lives in buffers that the exported
program mutates in place; it is multiplied by ``step.keep`` on entry, i.e. zeroed at position 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from star.export.executorch.norm import static_norm
from star.export.executorch.step import Step
from star.nn.linear_attention import LinearAttention, chunked_linear_attention, feature_map
from star.nn.shortconv import ShortConv
from star.nn.ssm import SSM, ssm_scan_chunked, ssm_scan_sequential


class StaticShortConv(nn.Module):
    """Gated short conv; state: the last ``kernel - 1`` gated inputs u, (1, d, kernel - 1)."""

    STATE = ("conv_state",)

    def __init__(self, op: ShortConv) -> None:
        super().__init__()
        self.op = op
        self.register_buffer(
            "conv_state", torch.zeros(1, op.d_model, op.spec.kernel - 1), persistent=False
        )
        self.conv_state: torch.Tensor

    def forward(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        op = self.op
        t, d = x.shape[1], op.d_model
        bcx = op.in_proj(x).transpose(1, 2)  # (1, 3d, T); slices, not chunk: XNNPACK has no split
        b_gate, c_gate, xs = bcx[:, :d], bcx[:, d : 2 * d], bcx[:, 2 * d :]  # each (1, d, T)
        u = b_gate * xs
        full = torch.cat((self.conv_state * step.keep, u), dim=2)  # (1, d, L - 1 + T)
        self.conv_state.copy_(full[:, :, t:])
        v = F.conv1d(full, op.conv.weight, groups=op.d_model)  # (1, d, T)
        return op.out_proj((c_gate * v).transpose(1, 2))


class StaticLinearAttention(nn.Module):
    """elu+1 linear attention; state: S (1, H, hd, hd) and z (1, H, hd), float32."""

    STATE = ("s_state", "z_state")

    def __init__(self, op: LinearAttention) -> None:
        super().__init__()
        self.op = op
        h, hd = op.spec.n_heads, op.spec.head_dim
        self.register_buffer("s_state", torch.zeros(1, h, hd, hd), persistent=False)
        self.register_buffer("z_state", torch.zeros(1, h, hd), persistent=False)
        self.s_state: torch.Tensor
        self.z_state: torch.Tensor

    def forward(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        op = self.op
        t = x.shape[1]
        h, hd = op.spec.n_heads, op.spec.head_dim

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(1, t, h, hd).transpose(1, 2).float()  # (1, H, T, hd)

        q = feature_map(heads(op.q_proj(x)))
        k = feature_map(heads(op.k_proj(x)))
        v = heads(op.v_proj(x))
        s0 = self.s_state * step.keep
        z0 = self.z_state * step.keep
        y, s1, z1 = chunked_linear_attention(q, k, v, s0, z0, chunk=t)  # one chunk of T
        self.s_state.copy_(s1)
        self.z_state.copy_(z1)
        return op.o_proj(y.transpose(1, 2).reshape(1, t, h * hd).to(x.dtype))


class StaticSSM(nn.Module):
    """Mamba-2; state: conv inputs (1, conv_dim, K - 1) and SSM state (1, H, P, N) float32."""

    STATE = ("conv_state", "ssm_state")

    def __init__(self, op: SSM) -> None:
        super().__init__()
        self.op = op
        self.norm = static_norm(op.norm)
        spec = op.spec
        self.register_buffer(
            "conv_state", torch.zeros(1, spec.conv_dim, spec.conv_kernel - 1), persistent=False
        )
        self.register_buffer(
            "ssm_state",
            torch.zeros(1, spec.n_heads, spec.head_dim, spec.state),
            persistent=False,
        )
        self.conv_state: torch.Tensor
        self.ssm_state: torch.Tensor

    def forward(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        op, spec = self.op, self.op.spec
        t = x.shape[1]
        h, p, n, g = spec.n_heads, spec.head_dim, spec.state, spec.n_groups
        z, xbc, dt = op.in_proj(x).split([spec.d_inner, spec.conv_dim, h], dim=-1)
        full = torch.cat((self.conv_state * step.keep, xbc.transpose(1, 2)), dim=2)
        self.conv_state.copy_(full[:, :, t:])
        xbc = F.silu(F.conv1d(full, op.conv1d.weight, op.conv1d.bias, groups=spec.conv_dim))
        xs, bs, cs = xbc.transpose(1, 2).split([spec.d_inner, g * n, g * n], dim=-1)
        xs = xs.reshape(1, t, h, p).float()  # (1, T, H, P)
        bs = bs.reshape(1, t, g, n).float().repeat_interleave(h // g, dim=2)  # (1, T, H, N)
        cs = cs.reshape(1, t, g, n).float().repeat_interleave(h // g, dim=2)
        dt = F.softplus(dt.float() + op.dt_bias.float())  # (1, T, H)
        a = -torch.exp(op.A_log.float())  # (H,)
        s0 = self.ssm_state * step.keep
        if t > 1:
            y, s1 = ssm_scan_chunked(xs, dt, a, bs, cs, s0, chunk=t)
        else:
            y, s1 = ssm_scan_sequential(xs, dt, a, bs, cs, s0)
        self.ssm_state.copy_(s1)
        y = y + xs * op.D.float()[:, None]
        y = y.reshape(1, t, spec.d_inner).to(x.dtype) * F.silu(z)
        return op.out_proj(self.norm(y))

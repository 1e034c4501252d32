"""Top-k MoE without data-dependent shapes.

star.nn's MoE gathers the tokens of each expert (sizes known only at run time). Here:

- decode (one token): the k chosen experts' stacked weights are gathered with ``index_select``
  (k is static) and applied as three batched matmuls, so the cost scales with k as on device;
- prefill (T tokens): every expert runs on every token and the outputs are weighted by a dense
  (T, E) matrix that is zero outside each token's top-k. The result is the same; the work is
  E/k times the sparse work, so a MoE genome's TTFT is an upper bound (said in the docs).

Routing is star.nn's ``route`` (softmax or sigmoid, selection bias, sum floor) unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from star.nn.moe import MoE, route


class StaticMoE(nn.Module):
    """Static-shape form of ``op`` (weights shared, not copied)."""

    def __init__(self, op: MoE) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        op = self.op
        spec = op.spec
        shape = x.shape
        xf = x.reshape(-1, shape[-1])  # (N, d)
        idx, weights = route(op.router(xf), spec, op.expert_bias)  # (N, k) each
        weights = weights.to(x.dtype)
        if xf.shape[0] == 1:
            chosen = idx[0]  # (k,)
            xe = xf.expand(spec.top_k, -1)[:, :, None]  # (k, d, 1)
            gate = torch.bmm(op.gate_exps.index_select(0, chosen), xe)  # (k, ff, 1)
            up = torch.bmm(op.up_exps.index_select(0, chosen), xe)
            ye = torch.bmm(op.down_exps.index_select(0, chosen), F.silu(gate) * up)  # (k, d, 1)
            out = (ye[:, :, 0] * weights[0][:, None]).sum(0, keepdim=True)  # (1, d)
        else:
            experts = torch.arange(spec.n_experts, dtype=idx.dtype)
            onehot = (idx[:, :, None] == experts).to(x.dtype)  # (N, k, E)
            dense = (onehot * weights[:, :, None]).sum(1)  # (N, E)
            gate = torch.einsum("nd,efd->enf", xf, op.gate_exps)  # (E, N, ff)
            up = torch.einsum("nd,efd->enf", xf, op.up_exps)
            ye = torch.einsum("enf,edf->end", F.silu(gate) * up, op.down_exps)  # (E, N, d)
            out = (ye * dense.transpose(0, 1)[:, :, None]).sum(0)  # (N, d)
        return out.view(shape)

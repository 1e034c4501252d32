"""Top-k mixture of SwiGLU experts with stacked expert weights.

Stacked (E, ff, d) tensors map one-to-one onto GGUF ``ffn_*_exps``. Tokens are gathered per
expert so compute scales with top_k, not with the number of experts. Routing:
- softmax: probs = softmax(logits), top-k, weights renormalised to sum 1;
- sigmoid (lfm2moe): probs = sigmoid(logits); ``expert_bias`` is added ONLY to choose the top-k;
  weights = unbiased probs of the chosen experts / max(sum, 6.1e-5).
"""

from __future__ import annotations

from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn

from star.genome.spec import MoESpec, Routing
from star.nn.factory import Factory

SIGMOID_NORM_FLOOR = 6.1e-5  # llama.cpp clamps the weight sum before dividing


def route(
    logits: torch.Tensor, spec: MoESpec, expert_bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Router logits (N, E) -> chosen experts (N, k) and their float32 weights (N, k)."""
    logits = logits.float()
    if spec.routing == Routing.SOFTMAX:
        probs = torch.softmax(logits, dim=-1)
    elif spec.routing == Routing.SIGMOID:
        probs = torch.sigmoid(logits)
    else:
        raise ValueError(f"unknown routing {spec.routing!r}")
    choose = probs if expert_bias is None else probs + expert_bias.float()
    idx = choose.topk(spec.top_k, dim=-1).indices  # (N, k)
    weights = probs.gather(-1, idx)  # (N, k)
    total = weights.sum(-1, keepdim=True)
    if spec.routing == Routing.SIGMOID:
        total = total.clamp_min(SIGMOID_NORM_FLOOR)
    return idx, weights / total


class MoE(nn.Module):
    """Top-k SwiGLU experts: ``router`` (E, d), ``gate_exps``/``up_exps`` (E, ff, d), ``down_exps``
    (E, d, ff)."""

    def __init__(self, spec: MoESpec, d_model: int, **factory: Unpack[Factory]) -> None:
        super().__init__()
        if not 0 < spec.top_k <= spec.n_experts:
            raise ValueError(f"top_k {spec.top_k} out of range for {spec.n_experts} experts")
        self.spec = spec
        e, f = spec.n_experts, spec.expert_dim
        self.router = nn.Linear(d_model, e, bias=False, **factory)
        if spec.expert_bias:
            # Set by load balancing, not by gradients (topk indices carry none anyway).
            self.expert_bias = nn.Parameter(torch.zeros(e, **factory), requires_grad=False)
        else:
            self.register_parameter("expert_bias", None)
        self.gate_exps = nn.Parameter(torch.empty(e, f, d_model, **factory))
        self.up_exps = nn.Parameter(torch.empty(e, f, d_model, **factory))
        self.down_exps = nn.Parameter(torch.empty(e, d_model, f, **factory))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        xf = x.reshape(-1, shape[-1])  # (N, d)
        idx, weights = route(self.router(xf), self.spec, self.expert_bias)  # (N, k) each
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # Each step routes a different number of tokens to each expert, and oneDNN builds a
            # bf16 matmul kernel per new shape: under bf16 autocast the proxy's MoE trained 1.4x
            # slower than in fp32 (MKL's fp32 GEMM has no per-shape cost). The experts run in fp32.
            with torch.autocast("cpu", enabled=False):
                return self._experts(xf.float(), idx, weights).to(x.dtype).view(shape)
        return self._experts(xf, idx, weights).view(shape)

    def _experts(self, xf: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Each token's top-k experts, weighted and summed: (N, d) -> (N, d)."""
        k = self.spec.top_k
        flat = idx.flatten()  # (N*k,)
        order = flat.argsort(stable=True)  # slots grouped by expert
        counts = torch.bincount(flat, minlength=self.spec.n_experts).tolist()
        flat_w = weights.flatten().to(xf.dtype)
        out = torch.zeros_like(xf)
        start = 0
        for e, count in enumerate(counts):
            if count == 0:
                continue
            slots = order[start : start + count]
            start += count
            tokens = slots // k
            xe = xf[tokens]  # (n_e, d)
            he = F.silu(xe @ self.gate_exps[e].T) * (xe @ self.up_exps[e].T)  # (n_e, ff)
            ye = (he @ self.down_exps[e].T) * flat_w[slots, None]  # (n_e, d)
            out.index_add_(0, tokens, ye)
        return out

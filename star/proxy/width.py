"""Width-aware proxy training (muP's Adam rule, Yang et al. 2022): fair across channel widths.

The search compares candidates of one ``d_model`` whose inner widths differ (FFN and expert widths,
SSM ``d_inner``, attention and linear-attention inner dims). Trained the standard way (every
matrix N(0, 0.02), one learning rate) a matrix that reads a width-n hidden space back into the
residual stream moves the stream by ~n * lr per Adam step, so at the proxy's short budget a wider
channel mixer learns *slower*, not faster. Measured at the default budget (memorization, d_model
64, 4 conv layers, seq 32, 3 seeds): FFN 8 reached 0.46 accuracy in 20 steps, FFN 128 0.02, FFN
576 chance. The proxy then ranks widths by how badly the fixed learning rate suits them, a bias
against exactly the wide channel mixers MAD finds best at memorization.

muP's rule for a width that grows while ``d_model`` stays: a "readout" matrix (fan-in n > d_model,
back into the d_model stream) starts at ``d_model / n`` of the standard init and learns at
``d_model / n`` of the learning rate; matrices out of the stream (fan-in d_model) keep both. A
model whose inner widths all equal ``d_model`` trains exactly as before. With the rule, FFN widths
8-576 learn the same table at the same pace (the one fixed learning rate suits them all), so the
proxy's ranking reflects the architecture, not the learning rate.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def width_multiplier(param: torch.Tensor, d_model: int) -> float:
    """``d_model / fan_in`` for a matrix that reads a wider space into the stream, else 1.

    Every weight of ``star.nn`` keeps its fan-in in the last dim (``nn.Linear`` (out, in), MoE
    experts (E, out, in)); vectors, the embedding (V, d) and conv kernels (d, 1, L) have fan-in
    <= d_model and keep 1.
    """
    if param.ndim < 2 or param.shape[-1] <= d_model:
        return 1.0
    return d_model / param.shape[-1]


@torch.no_grad()
def scale_readout_init(model: nn.Module, d_model: int) -> None:
    """Shrink each readout matrix's initial values by its ``width_multiplier`` (in place)."""
    for param in model.parameters():
        m = width_multiplier(param, d_model)
        if m != 1.0:
            param.mul_(m)


def param_groups(
    modules: list[nn.Module], d_model: int, *, lr: float, weight_decay: float, width_aware: bool
) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only; with ``width_aware`` each readout matrix at
    ``lr * width_multiplier`` (a scheduler scales every group's own lr alike)."""
    groups: dict[tuple[bool, float], list[torch.Tensor]] = {}
    for module in modules:
        for param in module.parameters():
            if not param.requires_grad:
                continue
            scale = width_multiplier(param, d_model) if width_aware else 1.0
            groups.setdefault((param.ndim >= 2, scale), []).append(param)
    ordered = sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1]))
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, "lr": lr * scale}
        for (decay, scale), params in ordered
    ]

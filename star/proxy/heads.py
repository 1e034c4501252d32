"""Task heads on top of ``StarModel`` that are not its LM head.

``AutoEncoderHead`` is MAD's compression read-out: the backbone's final hidden state at the last
position is the whole sequence's encoding; a small non-expanding MLP decodes it, with sin-cos
position embeddings saying which position to reconstruct. The backbone's hidden states are taken
with a forward hook on ``final_norm`` (the model's public layout), so the model is used as is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sincos(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sin-cos position embeddings."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return out


class AutoEncoderHead(nn.Module):
    """encoding (B, d) -> logits (B, T, vocab) for every position of the input."""

    def __init__(self, d_model: int, vocab_size: int, seq_len: int) -> None:
        super().__init__()
        self.register_buffer("pos", sincos(seq_len, d_model), persistent=False)
        self.decoder = nn.Sequential(
            nn.RMSNorm(d_model),
            nn.Linear(d_model, d_model),
            nn.GELU(),
            nn.RMSNorm(d_model),
            nn.Linear(d_model, d_model),
            nn.GELU(),
        )
        self.norm = nn.RMSNorm(d_model)
        self.unembed = nn.Linear(d_model, vocab_size)

    def reset_parameters(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    m.weight.copy_(
                        torch.empty(m.weight.shape).normal_(0.0, 0.02, generator=generator)
                    )
                    assert m.bias is not None
                    m.bias.zero_()

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        pos: torch.Tensor = self.pos  # type: ignore[assignment]
        x = encoding[:, None, :] + pos[None].to(encoding.dtype)  # (B, T, d)
        return self.unembed(self.norm(self.decoder(x)))  # (B, T, V)


class HiddenTap:
    """Captures the output of ``module`` (e.g. ``model.final_norm``) on every forward."""

    def __init__(self, module: nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: object, output: torch.Tensor) -> None:
        self.value = output

    def take(self) -> torch.Tensor:
        assert self.value is not None, "the tapped module did not run"
        out, self.value = self.value, None
        return out

    def close(self) -> None:
        self._handle.remove()


def masked_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions whose target is not -100. logits (B, T, V)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)

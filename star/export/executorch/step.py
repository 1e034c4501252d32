"""``Step``: where one call of an exported program sits in the sequence.

Every static-shape operator form reads its positions from here, so the exported graph has one
source of truth for them: the first position (``input_pos``), the T positions of this call, the
keys visible to full attention, and whether recurrent state starts afresh (position 0). A fresh
start is part of the graph rather than a separate reset method, so repeating a prefill from
position 0 (as a benchmark does) never reads the previous run's conv/SSM/linear-attention state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Step:
    """Positions of one call of ``prefill`` (T = chunk) or ``decode`` (T = 1)."""

    input_pos: torch.Tensor  # (1,) int64: absolute position of the first token
    positions: torch.Tensor  # (T,) int64: input_pos .. input_pos + T - 1
    kv_positions: torch.Tensor  # (L,) int64: arange(input_pos + T), the keys full attention sees
    keep: torch.Tensor  # (1,) float32: 0 at position 0 (recurrent state restarts), else 1
    _memo: dict[tuple[object, ...], tuple[torch.Tensor, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def at(cls, input_pos: torch.Tensor, n_tokens: int, kv_positions: torch.Tensor) -> Step:
        positions = input_pos + torch.arange(n_tokens, dtype=torch.int64)  # (T,)
        keep = (input_pos > 0).to(torch.float32)  # (1,)
        return cls(input_pos=input_pos, positions=positions, kv_positions=kv_positions, keep=keep)

    @classmethod
    def eager(cls, start: int, n_tokens: int) -> Step:
        """The step the runner passes for tokens ``start .. start + n_tokens - 1``."""
        return cls.at(
            torch.tensor([start], dtype=torch.int64),
            n_tokens,
            torch.arange(start + n_tokens, dtype=torch.int64),
        )

    def memo(
        self, key: tuple[object, ...], build: Callable[[], tuple[torch.Tensor, ...]]
    ) -> tuple[torch.Tensor, ...]:
        """``build()`` once per call for every layer asking with the same key (RoPE tables,
        attention masks): fewer ops in the graph, and fewer places where it leaves XNNPACK."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def rope(self, inv_freq: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables (1, T, 1, head_dim) of this call, shaped for (1, T, heads, hd).

        Same arithmetic as ``star.nn.rope.rope_cos_sin`` with ``inv_freq`` precomputed.
        """

        def build() -> tuple[torch.Tensor, ...]:
            freqs = self.positions.float()[:, None] * inv_freq[None, :]  # (T, hd/2)
            emb = torch.cat((freqs, freqs), dim=-1)[None, :, None, :]  # (1, T, 1, hd)
            return emb.cos(), emb.sin()

        cos, sin = self.memo(("rope", 2 * inv_freq.shape[0], theta), build)
        return cos, sin


def rope_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """star.nn.rope's inverse frequencies, computed eagerly (a constant of the program)."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float()
    return 1.0 / (theta ** (exponent / head_dim))  # (hd/2,)

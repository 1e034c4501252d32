"""``Step``: where one call of an exported program sits in the sequence.

Every static-shape operator form reads its positions from here, so the exported graph has one
source of truth for them: the first position (``input_pos``), the T positions of this call, the
keys visible to full attention, and whether recurrent state starts afresh (position 0). A fresh
start is part of the graph rather than a separate reset method, so repeating a prefill from
position 0 (as a benchmark does) never reads the previous run's conv/SSM/linear-attention state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Step:
    """Positions of one call of ``prefill`` (T = chunk) or ``decode`` (T = 1)."""

    input_pos: torch.Tensor  # (1,) int64: absolute position of the first token
    positions: torch.Tensor  # (T,) int64: input_pos .. input_pos + T - 1
    kv_positions: torch.Tensor  # (L,) int64: arange(input_pos + T), the keys full attention sees
    keep: torch.Tensor  # (1,) float32: 0 at position 0 (recurrent state restarts), else 1

    @classmethod
    def at(cls, input_pos: torch.Tensor, n_tokens: int, kv_positions: torch.Tensor) -> Step:
        positions = input_pos + torch.arange(n_tokens, dtype=torch.int64)  # (T,)
        keep = (input_pos > 0).to(torch.float32)  # (1,)
        return cls(input_pos=input_pos, positions=positions, kv_positions=kv_positions, keep=keep)

    @classmethod
    def eager(cls, start: int, n_tokens: int) -> Step:
        """The step the runner would pass for tokens ``start .. start + n_tokens - 1``."""
        return cls.at(
            torch.tensor([start], dtype=torch.int64),
            n_tokens,
            torch.arange(start + n_tokens, dtype=torch.int64),
        )

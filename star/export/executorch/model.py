"""``StaticModel``: a ``StarModel`` in the two forms a device runs, prefill and decode.

Same parameters (the StarModel's modules are held, not copied), static shapes, explicit state:

    prefill(tokens (1, chunk), input_pos (1,), kv_positions (L,)) -> logits (1, V)
    decode (tokens (1, 1),     input_pos (1,), kv_positions (L,)) -> logits (1, V)

``kv_positions`` is ``arange(input_pos + T)``: its length is the one dynamic dimension (how many
KV-cache slots full attention reads). Logits are those of the last token only, as llama-bench
computes them: the output head over every prompt position would cost as much as the layers.
A prompt of C tokens is C // chunk prefill calls and C % chunk decode calls.

The head is an ``nn.Linear`` holding the same weight as the embedding (or ``lm_head``), so that
weight quantization reaches it while the embedding lookup keeps its own table.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from star.export.executorch.attention import StaticAttention
from star.export.executorch.moe import StaticMoE
from star.export.executorch.norm import static_norm
from star.export.executorch.recurrent import StaticLinearAttention, StaticShortConv, StaticSSM
from star.export.executorch.step import Step
from star.nn import StarModel
from star.nn.attention import Attention
from star.nn.block import Block, Mixer
from star.nn.linear_attention import LinearAttention
from star.nn.moe import MoE
from star.nn.shortconv import ShortConv
from star.nn.ssm import SSM

StaticMixer = StaticAttention | StaticShortConv | StaticLinearAttention | StaticSSM


def static_mixer(op: Mixer, *, max_context: int, chunk: int) -> StaticMixer:
    """The fixed-state form of one star.nn token mixer."""
    if isinstance(op, Attention):
        return StaticAttention(op, max_context=max_context, chunk=chunk)
    if isinstance(op, ShortConv):
        return StaticShortConv(op)
    if isinstance(op, LinearAttention):
        return StaticLinearAttention(op)
    if isinstance(op, SSM):
        return StaticSSM(op)
    raise TypeError(f"no static form for token mixer {type(op).__name__}")


class StaticLayer(nn.Module):
    """One block: its mixer in static form, its norms in delegate-friendly form (same weights),
    its FFN as it is (MoE in static form)."""

    def __init__(self, block: Block, *, max_context: int, chunk: int) -> None:
        super().__init__()
        self.mixer_norm = static_norm(block.mixer_norm)
        self.mixer = static_mixer(block.mixer, max_context=max_context, chunk=chunk)
        self.ffn_norm = static_norm(block.ffn_norm) if block.ffn is not None else None
        ffn = block.ffn
        self.ffn: nn.Module | None = StaticMoE(ffn) if isinstance(ffn, MoE) else ffn

    def forward(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        h = x + self.mixer(self.mixer_norm(x), step)
        if self.ffn is not None:
            assert self.ffn_norm is not None
            h = h + self.ffn(self.ffn_norm(h))
        return h


class StaticModel(nn.Module):
    """Prefill/decode form of ``model`` for contexts up to ``max_context`` tokens."""

    def __init__(self, model: StarModel, *, max_context: int, chunk: int) -> None:
        super().__init__()
        spec = model.spec
        self.spec = spec
        self.max_context = max_context
        self.chunk = chunk
        self.embed = model.embed
        self.layers = nn.ModuleList(
            StaticLayer(block, max_context=max_context, chunk=chunk) for block in model.blocks
        )
        self.final_norm = static_norm(model.final_norm)
        self.head = nn.Linear(spec.d_model, spec.vocab_size, bias=False, device="meta")
        self.head.weight = model.embed.weight if spec.tie_embeddings else model.lm_head.weight

    @property
    def static_layers(self) -> list[StaticLayer]:
        return [cast(StaticLayer, layer) for layer in self.layers]

    def forward(
        self, tokens: torch.Tensor, input_pos: torch.Tensor, kv_positions: torch.Tensor
    ) -> torch.Tensor:
        """tokens (1, T) int64 at input_pos (1,) int64 -> logits of the last token (1, V)."""
        step = Step.at(input_pos, tokens.shape[1], kv_positions)
        x = self.embed(tokens)  # (1, T, d)
        for layer in self.static_layers:
            x = layer(x, step)
        x = self.final_norm(x[:, x.shape[1] - 1 :])  # (1, 1, d): a slice, no select
        return self.head(x).view(1, self.spec.vocab_size)  # (1, V)

    @torch.no_grad()
    def reset(self) -> None:
        """Zero every state buffer (eager use; the exported program zeroes at position 0)."""
        for layer in self.static_layers:
            for name in layer.mixer.STATE:
                getattr(layer.mixer, name).zero_()

    @torch.no_grad()
    def run(self, tokens: list[int]) -> list[torch.Tensor]:
        """Eager reference of the runner's schedule from position 0: chunks, then single tokens.

        Returns the logits (V,) after each call, i.e. at positions chunk-1, 2*chunk-1, ... and
        then at every position of the remainder.
        """
        outs: list[torch.Tensor] = []
        pos = 0
        for start, size in schedule(len(tokens), self.chunk):
            step_tokens = torch.tensor([tokens[start : start + size]], dtype=torch.int64)
            outs.append(
                self(
                    step_tokens,
                    torch.tensor([pos], dtype=torch.int64),
                    torch.arange(pos + size, dtype=torch.int64),
                )[0]
            )
            pos += size
        return outs


def schedule(n_tokens: int, chunk: int) -> list[tuple[int, int]]:
    """(start, size) of each call for a prompt of ``n_tokens``: full chunks, then single tokens.

    The C++ runner follows exactly this schedule.
    """
    full = n_tokens // chunk
    calls = [(i * chunk, chunk) for i in range(full)]
    calls += [(start, 1) for start in range(full * chunk, n_tokens)]
    return calls

"""Each operator's static (export) form equals star.nn's incremental decoding.

The same input pieces go through the star.nn module with its decode state and through the
static form with its fixed-size buffers: prefill chunks, single decode tokens, and a chunk at a
position that is not a multiple of the chunk (so ring slots wrap and state crosses calls).
"""

from __future__ import annotations

import pytest
import torch

from star.export.executorch.attention import StaticAttention
from star.export.executorch.model import StaticModel, schedule, static_mixer
from star.export.executorch.moe import StaticMoE
from star.export.executorch.step import Step
from star.nn.moe import MoE
from tests.executorch.specs import (
    CHUNK,
    MAX_CONTEXT,
    MIXED,
    MIXED_LAYERNORM,
    MOES,
    OPERATORS,
    model_of,
    random_tokens,
)

TOL = 2e-5
# (start, length): chunk, chunk, three decode tokens, an unaligned chunk, two decode tokens
PIECES = [(0, CHUNK), (CHUNK, CHUNK), (8, 1), (9, 1), (10, 1), (11, CHUNK), (15, 1), (16, 1)]
LENGTH = 17


def inputs(d_model: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, LENGTH, d_model, generator=gen)


@torch.no_grad()
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_static_mixer_equals_star_nn_incremental_decoding(name: str) -> None:
    model = model_of(OPERATORS[name])
    op = model.blocks[0].mixer
    form = static_mixer(op, max_context=MAX_CONTEXT, chunk=CHUNK)
    x = inputs(model.spec.d_model)
    state = op.new_state(1)
    worst = 0.0
    for start, size in PIECES:
        piece = x[:, start : start + size]
        expected = op(piece, pos=start, state=state)
        got = form(piece, Step.eager(start, size))
        assert got.shape == expected.shape
        worst = max(worst, (got - expected).abs().max().item())
    assert worst < TOL, f"{name}: static form differs from star.nn by {worst:.3g}"


@torch.no_grad()
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_static_mixer_restarts_at_position_zero(name: str) -> None:
    """A second pass from position 0 ignores the first pass's state (what a benchmark repeats)."""
    model = model_of(OPERATORS[name])
    form = static_mixer(model.blocks[0].mixer, max_context=MAX_CONTEXT, chunk=CHUNK)
    x = inputs(model.spec.d_model, seed=1)
    runs = [
        torch.cat([form(x[:, s : s + n], Step.eager(s, n)) for s, n in PIECES], dim=1)
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])


def test_ring_attention_keeps_constant_memory() -> None:
    """SWA with a window shorter than the context caches window - 1 + chunk slots, not the
    context; a window wider than the context falls back to the plain cache."""
    ring = static_mixer(model_of(OPERATORS["swa-ring"]).blocks[0].mixer, max_context=1024,
                        chunk=CHUNK)
    wide = static_mixer(model_of(OPERATORS["swa-wide"]).blocks[0].mixer, max_context=32,
                        chunk=CHUNK)
    assert isinstance(ring, StaticAttention) and isinstance(wide, StaticAttention)
    assert ring.ring and ring.k_cache.shape[1] == 5 - 1 + CHUNK
    assert not wide.ring and wide.k_cache.shape[1] == 32 + 1


@torch.no_grad()
@pytest.mark.parametrize("name", sorted(MOES))
@pytest.mark.parametrize("tokens", [1, CHUNK])
def test_static_moe_equals_star_nn(name: str, tokens: int) -> None:
    """Decode (gathered top-k experts) and prefill (dense, zero-weighted) both equal star.nn."""
    model = model_of(MOES[name])
    op = model.blocks[0].ffn
    assert isinstance(op, MoE)
    x = inputs(model.spec.d_model)[:, :tokens]
    expected = op(x)
    got = StaticMoE(op)(x)
    assert (got - expected).abs().max().item() < TOL


@torch.no_grad()
@pytest.mark.parametrize("spec", [MIXED, MIXED_LAYERNORM], ids=lambda s: s.name)
def test_static_model_equals_star_model(spec: object) -> None:
    """The whole prefill/decode schedule gives the full forward pass's logits at every call."""
    model = model_of(spec)  # type: ignore[arg-type]
    static = StaticModel(model, max_context=MAX_CONTEXT, chunk=CHUNK)
    tokens = random_tokens(LENGTH, model.spec.vocab_size)
    full = model(torch.tensor([tokens]))[0]  # (T, V)
    calls = schedule(LENGTH, CHUNK)
    got = static.run(tokens)
    assert len(got) == len(calls) == LENGTH // CHUNK + LENGTH % CHUNK
    for (start, size), logits in zip(calls, got, strict=True):
        expected = full[start + size - 1]
        assert (logits - expected).abs().max().item() < 1e-4 * expected.abs().max().item()


def test_static_model_shares_the_star_model_parameters() -> None:
    """No second weight layout: every parameter of the static form is a StarModel parameter."""
    model = model_of(MIXED)
    static = StaticModel(model, max_context=MAX_CONTEXT, chunk=CHUNK)
    ours = {id(p) for p in model.parameters()}
    assert {id(p) for p in static.parameters()} == ours


def test_schedule_is_chunks_then_single_tokens() -> None:
    assert schedule(10, 4) == [(0, 4), (4, 4), (8, 1), (9, 1)]
    assert schedule(3, 4) == [(0, 1), (1, 1), (2, 1)]

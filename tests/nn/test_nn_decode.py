"""Causality and incremental decoding == full forward, for every operator and mixed models."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nn_specs import all_specs, build, mixed_specs, set_chunk

from star.nn import StarModel

SPECS = all_specs()
TOL = 1e-5
T = 19


def tokens(seed: int, batch: int = 2, length: int = T) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, length), generator=gen)


def decode_in_pieces(model: StarModel, toks: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    cache = model.new_cache(toks.shape[0])
    outs, start = [], 0
    for size in sizes:
        outs.append(model(toks[:, start : start + size], cache))
        start += size
    assert start == toks.shape[1] and cache.position == start
    return torch.cat(outs, dim=1)


@pytest.fixture(scope="module", params=sorted(SPECS))
def model(request: pytest.FixtureRequest) -> StarModel:
    m = build(SPECS[request.param])
    set_chunk(m, 4)  # several chunks inside T tokens: exercises the cross-chunk recurrences
    return m


@torch.no_grad()
def test_causal(model: StarModel) -> None:
    toks = tokens(1)
    changed = toks.clone()
    t = 9
    changed[:, t] = (changed[:, t] + 1) % 256
    a, b = model(toks), model(changed)
    assert (a[:, :t] - b[:, :t]).abs().max().item() < TOL
    assert (a[:, t:] - b[:, t:]).abs().max().item() > 1e-3  # the change is visible from t on


@torch.no_grad()
def test_token_by_token_decode_matches_forward(model: StarModel) -> None:
    toks = tokens(2)
    full = model(toks)
    prefix = 6
    inc = decode_in_pieces(model, toks, [prefix] + [1] * (T - prefix))
    assert (full - inc).abs().max().item() < TOL


@torch.no_grad()
def test_chunked_decode_matches_forward(model: StarModel) -> None:
    toks = tokens(3)
    full = model(toks)
    inc = decode_in_pieces(model, toks, [5, 1, 7, 2, 4])
    assert (full - inc).abs().max().item() < TOL


@torch.no_grad()
def test_sequential_scan_matches_chunked(model: StarModel) -> None:
    """chunk=0 runs the plain recurrences, chunk=1 the degenerate parallel form."""
    toks = tokens(4)
    full = model(toks)
    for chunk in (0, 1, 64):
        set_chunk(model, chunk)
        try:
            other = model(toks)
        finally:
            set_chunk(model, 4)
        assert (full - other).abs().max().item() < TOL


MIXED = mixed_specs()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(sorted(MIXED)),
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=6),
)
def test_random_split_points(name: str, sizes: list[int]) -> None:
    model = _cached_build(name)
    toks = tokens(5, batch=1, length=sum(sizes))
    with torch.no_grad():
        full = model(toks)
        inc = decode_in_pieces(model, toks, sizes)
    assert (full - inc).abs().max().item() < TOL


_BUILT: dict[str, StarModel] = {}


def _cached_build(name: str) -> StarModel:
    if name not in _BUILT:
        _BUILT[name] = build(MIXED[name], seed=7)
    return _BUILT[name]

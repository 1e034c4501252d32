"""Hypothesis strategies for genome vectors (any integers, in or out of bounds).

Hypothesis draws a seed and numpy draws the 262 genes from it: shrinking works on the seed, and
thousands of vectors cost seconds instead of minutes.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from star.genome.encoding import LOWER, UPPER, VECTOR_LENGTH

_LO = np.array(LOWER)
_HI = np.array(UPPER)

seeds = st.integers(0, 2**32 - 1)


def _any(seed: int) -> list[int]:
    """In-bounds genes, with a random fraction pushed far out of bounds either way."""
    rng = np.random.default_rng(seed)
    vec = rng.integers(_LO, _HI + 1)
    wild = rng.random(VECTOR_LENGTH) < rng.random() * 0.3
    vec[wild] = rng.integers(-1000, 10**6, size=int(wild.sum()))
    return [int(x) for x in vec]


def _in_bounds(seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.integers(_LO, _HI + 1)]


def any_vectors() -> st.SearchStrategy[list[int]]:
    return seeds.map(_any)


def in_bounds_vectors() -> st.SearchStrategy[list[int]]:
    return seeds.map(_in_bounds)

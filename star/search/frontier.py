"""The Pareto frontier of a run, always computed from stored values (never stored by hand)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated rows (all objectives minimised). Rows with a non-finite
    value never dominate and are never on the front."""
    if not points:
        return []
    F = np.asarray(points, dtype=float)
    finite = np.flatnonzero(np.isfinite(F).all(axis=1))
    if finite.size == 0:
        return []
    front = NonDominatedSorting().do(F[finite], only_non_dominated_front=True)
    return sorted(int(finite[i]) for i in front)

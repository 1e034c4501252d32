"""When is a difference real: outcomes of one figure against another, verdicts, ties.

Two figures tie when their spread intervals overlap, ``|a - b| <= spread_a + spread_b``
(stddev over repetitions for timings, the standard error for the proxy loss): a rerun could
swap them. A figure without a recorded spread (peak RSS is one reading of one process;
analytic counts are exact) ties only with an equal figure. Verdicts are judged on outcomes,
so "dominates" means better beyond the noise somewhere and worse beyond it nowhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from star.report.model import Cell, Figure, Outcome, Tie, Verdict


def outcome(a: Figure, b: Figure) -> Outcome:
    """``a`` against ``b`` (lower is better): better, worse, tie, or n/a when one is missing."""
    if a.value is None or b.value is None:
        return "n/a"
    if math.isinf(a.value) or math.isinf(b.value):
        if math.isinf(a.value) and math.isinf(b.value):
            return "tie"
        return "worse" if math.isinf(a.value) else "better"
    allowed = (a.spread or 0.0) + (b.spread or 0.0)
    gap = a.value - b.value
    if abs(gap) <= allowed:
        return "tie"
    return "better" if gap < 0 else "worse"


def cell(key: str, a: Figure, b: Figure) -> Cell:
    return Cell(key, a, b, outcome(a, b))


def verdict(outcomes: Iterable[Outcome]) -> Verdict:
    """Over the run's objectives: dominates (no worse, some better), dominated, tie (all
    within spread), trade-off, or incomplete (a figure is missing)."""
    got = list(outcomes)
    if not got or "n/a" in got:
        return "incomplete"
    if all(o == "tie" for o in got):
        return "tie"
    if "worse" not in got:
        return "dominates"
    if "better" not in got:
        return "dominated"
    return "trade-off"


def front_ties(front: Iterable[str], objectives: Mapping[str, Mapping[str, Figure]],
               names: Iterable[str]) -> list[Tie]:
    """Pairs of frontier members that tie on every objective (``objectives``: genome id ->
    objective name -> figure)."""
    keys = tuple(names)
    members = list(front)
    out = []
    for i, a in enumerate(members):
        for b in members[i + 1:]:
            if keys and all(outcome(objectives[a][k], objectives[b][k]) == "tie" for k in keys):
                out.append(Tie(a, b, keys))
    return out

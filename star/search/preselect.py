"""Which predicted offspring to send to the devices: pure functions over objective matrices.

Both rankings work in the surrogate's space (``star.search.surrogate.rank_space``: the log of each
objective, all minimised) and treat a row as feasible when every G entry is <= 0, as pymoo does.
They are deterministic: every sort is stable and every tie goes to the lower index.

- ``rank_and_crowding``: NSGA-II's own survival order, with the population: feasible before
  infeasible, then by non-dominated front, then by crowding distance.
- ``hv_greedy``: the offspring that add the most hypervolume to the front of everything told so
  far, one at a time, each chosen one joining the front at its predicted point (so a batch
  spreads along the front instead of piling up where the single best gain is); the objectives
  are normalised by the told feasible points (a budgeted objective's nadir is its budget), the
  reference point 10% beyond. What adds nothing is ranked by ``rank_and_crowding``.
"""

from __future__ import annotations

import numpy as np


def _crowding(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the rows of ``F`` (boundary rows: inf), stable on ties."""
    n, m = F.shape
    out = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(F[:, j], kind="stable")
        span = F[order[-1], j] - F[order[0], j]
        out[order[0]] = out[order[-1]] = np.inf
        if span > 0:
            out[order[1:-1]] += (F[order[2:], j] - F[order[:-2], j]) / span
    return out


def violation(G: np.ndarray) -> np.ndarray:
    """pymoo's constraint violation: the sum of the positive G entries of each row."""
    G = np.asarray(G, dtype=float)
    return np.maximum(G, 0).sum(axis=1) if G.size else np.zeros(len(G))


def rank_and_crowding(F_ref: np.ndarray, G_ref: np.ndarray, F_new: np.ndarray,
                      G_new: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` best rows of ``F_new``/``G_new`` (predicted) ranked together with
    ``F_ref``/``G_ref`` (the population, as told): feasible before infeasible; feasible ones by
    non-dominated front, then, within the front that does not fit, by crowding distance with
    the least crowded kept (pruned one at a time, the population's members staying in the
    front); infeasible ones by summed violation."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    n_ref = len(F_ref)
    F = np.vstack([F_ref, F_new]) if n_ref else np.asarray(F_new, dtype=float)
    cv = np.concatenate([violation(G_ref) if n_ref else np.zeros(0), violation(G_new)])
    feasible = np.flatnonzero(cv <= 0)
    chosen: list[int] = []
    fronts = NonDominatedSorting().do(F[feasible]) if len(feasible) else []
    for front in fronts:
        members = [int(i) for i in feasible[front]]
        new = sorted(i - n_ref for i in members if i >= n_ref)
        if len(chosen) + len(new) <= k:
            chosen += new
            continue
        alive = sorted(members)
        while sum(1 for i in alive if i >= n_ref) > k - len(chosen):
            cd = _crowding(F[alive])
            pos = [p for p, i in enumerate(alive) if i >= n_ref]
            drop = min(pos, key=lambda p: (cd[p], -p))  # most crowded; on ties the later one
            del alive[drop]
        chosen += [i - n_ref for i in alive if i >= n_ref]
        break
    if len(chosen) < k:
        rest = [int(i) - n_ref for i in np.argsort(cv, kind="stable")
                if i >= n_ref and cv[i] > 0]
        chosen += rest[: k - len(chosen)]
    return chosen


def hv_greedy(F_told: np.ndarray, G_told: np.ndarray, F_new: np.ndarray, G_new: np.ndarray,
              k: int, *, nadir: np.ndarray | None = None) -> list[int]:
    """Up to ``k`` indices of ``F_new`` in order of greedy hypervolume gain over the feasible
    rows of ``F_told`` (see the module doc); ``nadir``: per objective a fixed worst value (NaN:
    none), e.g. the budget of a budgeted objective. Stops early when nothing adds volume."""
    from pymoo.indicators.hv import HV

    told = np.asarray(F_told, dtype=float)[violation(G_told) <= 0] if len(F_told) else (
        np.zeros((0, np.shape(F_new)[1])))
    new_ok = np.flatnonzero(violation(G_new) <= 0)
    if not len(told) or not len(new_ok):
        return []
    lo = np.minimum(told.min(axis=0), np.asarray(F_new)[new_ok].min(axis=0))
    hi = told.max(axis=0)
    if nadir is not None:
        hi = np.where(np.isnan(nadir), hi, np.maximum(nadir, lo))
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    ref = np.full(told.shape[1], 1.1)
    hv = HV(ref_point=ref)

    def norm(F: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(F) - lo) / span

    front = norm(told)
    front = front[np.all(front < ref, axis=1)]
    base = float(hv(front)) if len(front) else 0.0
    cand = {int(i): norm(F_new[i])[0] for i in new_ok}
    chosen: list[int] = []
    while len(chosen) < k and cand:
        best, gain = -1, 0.0
        for i, x in cand.items():  # ascending index: ties keep the lower one
            if np.any(x >= ref) or (len(front) and np.any(np.all(front <= x, axis=1))):
                continue  # outside the box or dominated (weakly): adds nothing
            g = float(hv(np.vstack([front, x]) if len(front) else x[None])) - base
            if g > gain + 1e-15:
                best, gain = i, g
        if best < 0:
            break
        chosen.append(best)
        front = np.vstack([front, cand.pop(best)]) if len(front) else cand.pop(best)[None]
        base += gain
    return chosen

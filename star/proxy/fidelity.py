"""Rank fidelity of a proxy: does it order architectures as a longer, wider training does?

Numpy only (no scipy at run time): Spearman's rho (Pearson on average ranks), Kendall's tau-b
(tie-corrected), and a bootstrap that resamples genomes and, per genome, one proxy seed, so the
interval covers both which architectures were drawn and the seed noise a single-seed search sees
(the search trains each candidate once). ``bench/proxy_fidelity.py`` feeds it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Stat = Callable[[np.ndarray, np.ndarray], float]


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (scipy's ``rankdata(method="average")``)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; nan when either side is constant or n < 2."""
    ra, rb = rankdata(a), rankdata(b)
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def kendall(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b (ties in either variable corrected, as scipy's default)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    iu = np.triu_indices(len(a), k=1)
    da = np.sign(a[:, None] - a[None, :])[iu]
    db = np.sign(b[:, None] - b[None, :])[iu]
    n_a, n_b = np.count_nonzero(da), np.count_nonzero(db)
    if n_a == 0 or n_b == 0:
        return float("nan")
    return float((da * db).sum() / np.sqrt(n_a * n_b))


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap percentile interval."""

    value: float
    low: float
    high: float
    n: int  # genomes

    def __str__(self) -> str:
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def rank_fidelity(
    proxy: np.ndarray,
    reference: np.ndarray,
    stat: Stat = spearman,
    *,
    n_boot: int = 2000,
    level: float = 0.9,
    seed: int = 0,
) -> Interval:
    """``stat`` between proxy scores and reference scores, with a bootstrap interval.

    proxy: (G, S) scores of G genomes under S proxy seeds (nan = missing seed); reference: (G,).
    The point estimate is the mean over seeds of ``stat`` of one seed's scores (what one proxy run
    per candidate gives). Each bootstrap draw resamples genomes with replacement and one available
    seed per drawn genome; draws whose ranks are constant are skipped.
    """
    proxy = np.asarray(proxy, dtype=float)
    if proxy.ndim == 1:
        proxy = proxy[:, None]
    reference = np.asarray(reference, dtype=float)
    g, s = proxy.shape
    per_seed = [stat(proxy[:, j], reference) for j in range(s) if np.isfinite(proxy[:, j]).all()]
    finite = [v for v in per_seed if np.isfinite(v)]
    value = float(np.mean(finite)) if finite else float("nan")
    rng = np.random.default_rng(seed)
    have = [np.flatnonzero(np.isfinite(proxy[i])) for i in range(g)]
    draws: list[float] = []
    for _ in range(n_boot):
        rows = np.asarray(rng.integers(0, g, size=(g,)), dtype=np.int64)
        cols = np.array([rng.choice(have[int(r)]) for r in rows.tolist()])
        v = stat(proxy[rows, cols], reference[rows])
        if np.isfinite(v):
            draws.append(v)
    if not draws:
        return Interval(value, float("nan"), float("nan"), g)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = (float(q) for q in np.percentile(draws, [tail, 100.0 - tail]))
    return Interval(value, low, high, g)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of (cost, fidelity) points not dominated (lower cost, higher fidelity), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front

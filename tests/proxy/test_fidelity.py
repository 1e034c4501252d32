"""Rank statistics of the fidelity benchmark agree with scipy and behave at the edges."""

from __future__ import annotations

import numpy as np
import pytest

from star.proxy.fidelity import kendall, pareto_front, rank_fidelity, rankdata, spearman


def test_rank_statistics_match_scipy_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 6, 12).astype(float)  # many ties
        b = a + rng.normal(0, 2, 12)
        np.testing.assert_allclose(rankdata(a), stats.rankdata(a))
        assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
        assert kendall(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)


def test_perfect_and_reversed_orders_and_constant_input() -> None:
    x = np.arange(8.0)
    assert spearman(x, x**3) == pytest.approx(1.0) and kendall(x, -x) == pytest.approx(-1.0)
    assert np.isnan(spearman(x, np.ones(8))) and np.isnan(kendall(np.ones(8), x))


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_agreement() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=16)
    close = ref[:, None] + rng.normal(0, 0.1, (16, 3))  # three seeds, little noise
    noisy = ref[:, None] + rng.normal(0, 2.0, (16, 3))
    a = rank_fidelity(close, ref, n_boot=400)
    b = rank_fidelity(noisy, ref, n_boot=400)
    assert a.low <= a.value <= a.high and a.value > 0.9 and a.n == 16
    assert (a.high - a.low) < (b.high - b.low) and b.value < a.value


def test_bootstrap_uses_only_available_seeds() -> None:
    ref = np.arange(6.0)
    proxy = np.stack([ref, np.full(6, np.nan)], axis=1)  # second seed missing everywhere
    assert rank_fidelity(proxy, ref, n_boot=50).value == pytest.approx(1.0)


def test_pareto_front_keeps_cheaper_or_better_points() -> None:
    pts = [(1.0, 0.5), (2.0, 0.4), (3.0, 0.8), (0.5, 0.1), (3.0, 0.7)]
    assert pareto_front(pts) == [3, 0, 2]

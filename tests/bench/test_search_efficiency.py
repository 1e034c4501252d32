"""The search-efficiency bench's bookkeeping (bench/search_efficiency.py, bench/real_device.py).

The bench itself is run on demand; these check what its numbers rest on without running a
search or a device: the budget / HV-bound rule of ``--device x86``, how a runner report becomes
figures, and how an evaluation that only has a peak-RSS lower bound is counted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import search_efficiency as se
from bench.real_device import Figures, figures_from_report, spec_key
from device_agents.schemas import BenchReport, ContextMeasurement, RuntimeSettings, Stat
from star.genome import load_genome, scale_spec
from tests.conftest import GENOMES

REFERENCE = GENOMES / se.SEED_GENOMES[0]


def _reference_at_oracle() -> np.ndarray:
    spec = load_genome(REFERENCE).to_spec()
    return np.array([se._quality(spec), se._ttft_ms(spec), se._rss_mib(spec)])


def test_scaled_bounds_of_the_oracle_reference_are_the_oracle_bounds() -> None:
    budget, ideal, nadir = se.scaled_bounds(_reference_at_oracle())
    assert budget == pytest.approx(se.BUDGET_MB)
    np.testing.assert_allclose(ideal, se.IDEAL)
    np.testing.assert_allclose(nadir, se.NADIR)


def test_scaled_bounds_follow_the_reference_per_objective() -> None:
    budget, ideal, nadir = se.scaled_bounds(_reference_at_oracle() * np.array([1.0, 0.1, 0.25]))
    assert budget == pytest.approx(se.BUDGET_MB / 4)
    np.testing.assert_allclose(nadir, se.NADIR * np.array([1.0, 0.1, 0.25]))
    assert nadir[2] == pytest.approx(budget)  # the RSS nadir is the budget, as in the oracle
    np.testing.assert_allclose(ideal, se.IDEAL)  # 1.9 quality; 0 ms and 0 MiB stay 0


def _report(*contexts: ContextMeasurement) -> BenchReport:
    runtime = RuntimeSettings(llama_cpp_commit="0c1e57098", threads=2, flash_attn=False,
                              n_gen=16, repetitions=2)
    return BenchReport(model_sha256="0" * 64, model_bytes=1, runtime=runtime,
                       contexts=list(contexts))


def test_figures_from_a_report() -> None:
    ok = ContextMeasurement(context=2048,
                            ttft_ms=Stat(median=500.0, stddev=25.0, samples=[475.0, 525.0]),
                            decode_ms_per_token=Stat(median=4.0, stddev=0.1, samples=[4.0]),
                            peak_rss_bytes=64 * 2**20)
    got = figures_from_report(_report(ok), 2048)
    assert (got.ttft_ms, got.peak_rss_mib, got.decode_ms, got.ttft_cv) == (500.0, 64.0, 4.0, 0.05)
    assert got.ok

    oom = figures_from_report(_report(ContextMeasurement(context=2048, oom=True)), 2048)
    assert math.isinf(oom.peak_rss_mib) and not oom.ok
    broken = figures_from_report(_report(ContextMeasurement(context=2048, error="exit 1")), 2048)
    assert math.isnan(broken.ttft_ms) and broken.error == "exit 1"
    assert figures_from_report(_report(ok), 4096).error == "no measurement at 4096 tokens"
    assert Figures(**{**got.__dict__}) == got  # the cache's JSON round trip is field by field


def test_spec_key_is_the_exported_spec() -> None:
    scale = se.DEFAULT_SCALE
    a = scale_spec(load_genome(REFERENCE).to_spec(), scale)
    b = scale_spec(load_genome(GENOMES / se.SEED_GENOMES[1]).to_spec(), scale)
    assert spec_key(a) == spec_key(scale_spec(load_genome(REFERENCE).to_spec(), scale))
    assert spec_key(a) != spec_key(b)


def test_a_lower_bound_only_evaluation_is_spent_and_infeasible_by_its_bound() -> None:
    """What random and plain NSGA-II get for a genome whose weights + KV already break the
    budget under ``--device x86`` (bench/real_device.MeasuredFigures): one evaluation, G as the
    pre-screen's, nothing for the hypervolume."""
    mode = se.Mode(deploy=lambda g: g.to_spec(),
                   figures=lambda spec, gid: np.array([2.5, math.nan, 1024.0]))
    ledger = se.Ledger(5, mode)
    vec = load_genome(REFERENCE).genes
    F, G = ledger.evaluate(vec, prescreen=False)
    assert ledger.spent == 1 and ledger.feasible == [False]
    assert G == [pytest.approx((1024.0 - se.BUDGET_MB) / se.BUDGET_MB), 1.0]
    assert (F == se.MISSING).all()
    assert ledger.evaluate(vec, prescreen=False)[1] == G and ledger.spent == 1  # a repeat: free
    assert ledger.hv_at(1) == 0.0


def test_oracle_mode_evaluates_as_before() -> None:
    ledger = se.Ledger(5)
    vec = load_genome(REFERENCE).genes
    F, G = ledger.evaluate(vec, prescreen=True)
    key = se.genome_key(vec)
    np.testing.assert_array_equal(F, se.oracle(load_genome(REFERENCE).to_spec(), key))
    assert G == [pytest.approx((F[2] - se.BUDGET_MB) / se.BUDGET_MB), 0.0]
    assert ledger.ids == [key]

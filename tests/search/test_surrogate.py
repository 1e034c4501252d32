"""Surrogate-assisted pre-selection: accurate enough to rank, deterministic, replayable.

The surrogate is judged on a simulated device that was not built from its features
(``tests/support/device_oracle.py``: its own matrix counts, micro-batched prefill, masked
attention tiles, a Q6_K output head, padded KV cells, compute buffers, its own loss law, and
multiplicative noise seeded by the genome id), so a good score is not the ridge solver
recovering the formula it was fitted with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
from pymoo.core.evaluator import Evaluator
from pymoo.core.problem import Problem
from pymoo.problems.static import StaticProblem

from star.cost import Quant, count_params, prefill_flops
from star.cost.memory import kv_bytes, state_bytes, weight_bytes
from star.genome import VECTOR_LENGTH, Genome, load_genome
from star.genome.encoding import LOWER, UPPER
from star.search.config import OperatorSettings, SearchConfig
from star.search.evaluate import MISSING
from star.search.objectives import parse_metric
from star.search.operators import GenomeSampling, build_nsga2, genome_key
from star.search.preselect import hv_greedy, rank_and_crowding
from star.search.runtime_fit import make_constraint
from star.search.surrogate import Archive, Ridge, Surrogate, budget_value, rank_space
from tests.conftest import GENOMES
from tests.search.conftest import search_config
from tests.support import device_oracle
from tests.support.device_oracle import LAPTOP, PER_UNIT, Device

CONTEXT = device_oracle.CONTEXT
LIMIT = 600.0  # peak RSS budget, MiB
OBJECTIVES = [parse_metric(n) for n in ("quality", f"ttft_ms@{CONTEXT}/x86",
                                        f"peak_rss_mb@{CONTEXT}/x86")]
BUDGETS = [(parse_metric(f"peak_rss_mb@{CONTEXT}/x86"), LIMIT)]
BASE = load_genome(GENOMES / "lfm2-350m.yaml").genes
SEEDS = [BASE, load_genome(GENOMES / "lfm2-350m-swa.yaml").genes]
CONSTRAINT = make_constraint(lambda g: g.to_spec())


def told(vec: tuple[int, ...], device: Device = LAPTOP) -> tuple[np.ndarray, list[float]]:
    """F and G as ``star.search.evaluate`` forms them, measured on the simulated device."""
    f = device_oracle.measure(Genome(vec).to_spec(), genome_key(vec), device)
    return f, [(f[2] - LIMIT) / LIMIT, 0.0]


def sample(n: int, seed: int) -> list[tuple[int, ...]]:
    sampler = GenomeSampling(seeds=SEEDS, constraint=CONSTRAINT, base=BASE)
    X = sampler._do(None, n, random_state=np.random.default_rng(seed))
    return list(dict.fromkeys(tuple(int(v) for v in x) for x in X))


def surrogate() -> Surrogate:
    return Surrogate(OBJECTIVES, BUDGETS, lambda g: g.to_spec(), Quant.Q4_0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


# ---- the model ------------------------------------------------------------------------------

def test_ridge_recovers_a_linear_law_and_shrinks_noise() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = 2.0 + X @ np.array([1.0, -0.5, 0.0, 0.25]) + 0.01 * rng.normal(size=60)
    mean, sd = Ridge().fit(X, y).predict(X[:5])
    assert np.allclose(mean, y[:5], atol=0.05)
    assert np.all(sd < 0.05)
    noise = Ridge().fit(X, rng.normal(size=60))  # pure noise: shrunk to the mean
    assert np.ptp(noise.predict(X)[0]) < 0.5


def test_budget_value_inverts_evaluate() -> None:
    assert budget_value((700.0 - 600.0) / 600.0, 600.0) == pytest.approx(700.0)
    assert budget_value(3.0 - 0.0, 0.0) == pytest.approx(3.0)


# ---- judged on the simulated device ----------------------------------------------------------

JUDGED_SEEDS = (1, 2, 3, 4, 5, 6)  # samples of 90 genomes each: 50 told, the rest held out


@dataclass(frozen=True)
class Judged:
    """One sample's held-out figures. ``fitted`` and ``analytic``: Spearman correlations with
    the device's (quality, TTFT, peak RSS) of the surrogate fitted on the told genomes and of
    the analytic model it starts from (the same surrogate with nothing told: non-embedding
    parameters, prefill FLOPs, the RSS lower bound). ``feasible_*``: the share of held-out
    genomes on which each agrees with the device about the RSS budget. ``ttft_rmse_*``: log
    TTFT errors, the analytic model scaled by its mean ratio to the device."""

    fitted: np.ndarray
    analytic: np.ndarray
    feasible_fitted: float
    feasible_analytic: float
    ttft_rmse_fitted: float
    ttft_rmse_analytic: float


@cache
def judged(seed: int, device: Device) -> Judged:
    genomes = sample(90, seed=seed)
    train, test = genomes[:50], genomes[50:]
    archive = Archive()
    rows = [told(v, device) for v in train]
    archive.add(np.array(train), np.array([f for f, _ in rows]), np.array([g for _, g in rows]))
    F_fit, G_fit = surrogate().fit(archive).predict(test)
    F_ana, G_ana = surrogate().fit(Archive()).predict(test)
    truth = rank_space(np.array([told(v, device)[0] for v in test]))
    feasible = np.exp(truth[:, 2]) <= LIMIT
    scaled = F_ana[:, 1] + np.mean(truth[:, 1] - F_ana[:, 1])
    return Judged(
        fitted=np.array([spearman(F_fit[:, j], truth[:, j]) for j in range(3)]),
        analytic=np.array([spearman(F_ana[:, j], truth[:, j]) for j in range(3)]),
        feasible_fitted=float(np.mean((G_fit[:, 0] <= 0) == feasible)),
        feasible_analytic=float(np.mean((G_ana[:, 0] <= 0) == feasible)),
        ttft_rmse_fitted=float(np.sqrt(np.mean((F_fit[:, 1] - truth[:, 1]) ** 2))),
        ttft_rmse_analytic=float(np.sqrt(np.mean((scaled - truth[:, 1]) ** 2))),
    )


def test_fitted_surrogate_ranks_held_out_quality_and_memory_better_than_the_analytic_model(
) -> None:
    results = [judged(seed, LAPTOP) for seed in JUDGED_SEEDS]
    margin = np.array([r.fitted - r.analytic for r in results])  # (seed, objective)
    # quality: the loss law's exponent, the recall and aspect terms are learnt from told losses
    assert np.all(margin[:, 0] > 0.02) and margin[:, 0].mean() > 0.04, margin[:, 0]
    # peak RSS: compute buffers, the Q6_K head and padded KV cells on top of the lower bound
    # (which already ranks well, so the margin is asked of the mean; no sample may lose)
    assert np.all(margin[:, 2] > -0.005) and margin[:, 2].mean() > 0.015, margin[:, 2]
    assert all(r.fitted[0] > 0.94 and r.fitted[2] > 0.96 for r in results)
    # the budget column is predicted in MiB: feasibility agrees for nearly every held-out
    # genome, more often than by the lower bound (which admits whatever it underestimates)
    assert all(r.feasible_fitted >= 0.95 for r in results)
    assert sum(r.feasible_fitted for r in results) > sum(r.feasible_analytic for r in results)


TTFT_NOISE = device_oracle.NOISE[1]  # the device's run-to-run spread (log sd)


def _assert_ttft_learnt(results: list[Judged]) -> None:
    margin = np.array([r.fitted[1] - r.analytic[1] for r in results])
    assert np.all(margin > -0.005) and margin.mean() > 0.015, margin
    rmse = [r.ttft_rmse_fitted for r in results]
    assert max(rmse) < 1.5 * TTFT_NOISE, rmse  # down to the device's own noise


def test_fitted_surrogate_predicts_held_out_ttft_to_the_noise_of_a_per_unit_device() -> None:
    """PER_UNIT spends a fixed time per unit of each kind of work (the surrogate's assumption)
    but its costs are its own: micro-batches, masked attention tiles, softmax traffic, SSM
    steps, the head for the last token only. Prefill FLOPs already rank TTFT well (about
    0.95); the fitted model ranks better and its errors are the device's noise."""
    _assert_ttft_learnt([judged(seed, PER_UNIT) for seed in JUDGED_SEEDS])


@pytest.mark.xfail(strict=True, reason=(
    "TTFT features (star.search.features) give every dense matmul one efficiency: a device "
    "whose matmuls are slower for narrow matrices and for routed experts is learnt to about "
    "0.2 log-RMSE, ranked no better than by FLOPs"))
def test_fitted_surrogate_predicts_held_out_ttft_when_efficiency_depends_on_width_and_experts(
) -> None:
    _assert_ttft_learnt([judged(seed, LAPTOP) for seed in JUDGED_SEEDS])


def test_without_data_the_analytic_model_orders_and_bounds() -> None:
    model = surrogate().fit(Archive())
    genomes = sample(30, seed=2)
    F, G = model.predict(genomes)
    specs = [Genome(v).to_spec() for v in genomes]
    assert spearman(F[:, 1], np.array([prefill_flops(s, CONTEXT) for s in specs])) > 0.99
    bound = np.array([(weight_bytes(s, Quant.Q4_0) + kv_bytes(s, CONTEXT) + state_bytes(s))
                      / 2**20 for s in specs])
    assert np.allclose(G[:, 0], (bound - LIMIT) / LIMIT)  # the pre-screen's lower bound
    assert np.all(G[:, 1] == 0)


def test_every_metric_kind_is_predicted_and_analytic_ones_exactly() -> None:
    keys = [parse_metric(n) for n in ("params", "kv_bytes_per_token", "decode_ms@4096/android",
                                      "ttft_ms@512/x86", "peak_rss_mb@4096/android")]
    model = Surrogate(keys, [(keys[0], 400.0)], lambda g: g.to_spec(), Quant.Q8_0)
    genomes = sample(12, seed=3)
    archive = Archive()
    F = np.array([[count_params(Genome(v).to_spec()).params / 1e6, 1.0, 10.0, 100.0, 500.0]
                  for v in genomes])
    archive.add(np.array(genomes), F, np.zeros((len(genomes), 2)))
    P, G = model.fit(archive).predict(genomes)
    assert np.allclose(P[:, 0], np.log(F[:, 0]))  # params: exact, not learned
    assert np.allclose(G[:, 0], (F[:, 0] - 400.0) / 400.0)
    assert np.all(np.isfinite(P)) and set(model.models) == {k.name for k in keys[2:]}


# ---- pre-selection --------------------------------------------------------------------------

def test_rank_and_crowding_prefers_feasible_non_dominated_spread() -> None:
    ref = np.array([[1.0, 1.0]])
    F = np.array([[0.5, 0.5], [2.0, 2.0], [0.0, 3.0], [0.1, 0.1], [3.0, 0.0], [0.2, 0.2]])
    G = np.zeros((6, 1))
    G[3, 0] = 0.5  # the best point breaks a budget
    ok = np.zeros((1, 1))
    assert rank_and_crowding(ref, ok, F, G, 3) == [2, 4, 5]  # the feasible front
    assert rank_and_crowding(ref, ok, F, G, 4) == [2, 4, 5, 0]  # then the next front
    assert rank_and_crowding(ref, ok, F, G, 2) == [2, 4]  # extremes: least crowded
    assert rank_and_crowding(ref, ok, F, G, 6)[-1] == 3  # the infeasible one last


def test_hv_greedy_takes_the_biggest_gain_then_spreads() -> None:
    told_F = np.array([[0.0, 1.0], [1.0, 0.0]])
    F = np.array([[0.5, 0.5], [0.45, 0.5], [0.9, 0.9], [0.2, 0.7]])
    pick = hv_greedy(told_F, np.zeros((2, 1)), F, np.zeros((4, 1)), 4)
    assert pick[0] == 1  # dominates candidate 0: more volume
    assert 2 not in pick and 0 not in pick  # dominated by the told front / by a pick
    infeasible = hv_greedy(told_F, np.zeros((2, 1)), F, np.ones((4, 1)), 4)
    assert infeasible == []


# ---- inside NSGA-II ---------------------------------------------------------------------------

def _problem() -> Problem:
    return Problem(n_var=VECTOR_LENGTH, n_obj=3, n_ieq_constr=2, xl=np.array(LOWER),
                   xu=np.array(UPPER), vtype=int)


def _algorithm(**settings: object) -> object:
    ops = OperatorSettings(**{"oversample": 4, **settings})  # type: ignore[arg-type]
    return build_nsga2(pop_size=6, constraint=CONSTRAINT, settings=ops, seeds=SEEDS, base=BASE,
                       surrogate=surrogate())


def _tell(algo: object, pop: object, F: np.ndarray, G: np.ndarray) -> None:
    Evaluator().eval(StaticProblem(algo.problem, F=F, G=G), pop)  # type: ignore[attr-defined]
    algo.tell(infills=pop)  # type: ignore[attr-defined]


def _run(seed: int, generations: int, **settings: object
         ) -> tuple[list[list[str]], list[tuple[np.ndarray, np.ndarray]]]:
    algo = _algorithm(**settings)
    algo.setup(_problem(), termination=("n_gen", 100), seed=seed,  # type: ignore[attr-defined]
               verbose=False)
    asked: list[list[str]] = []
    history = []
    for _ in range(generations):
        pop = algo.ask()  # type: ignore[attr-defined]
        X = pop.get("X")
        asked.append([genome_key(x) for x in X])
        rows = [told(tuple(int(v) for v in x)) for x in X]
        F = np.array([f for f, _ in rows])
        G = np.array([g for _, g in rows])
        F[0], G[0] = MISSING, [0.0, 1.0]  # one candidate never measured: F missing
        history.append((F, G))
        _tell(algo, pop, F, G)
    return asked, history


def test_preselection_is_deterministic_and_never_repeats_a_genome() -> None:
    a, _ = _run(3, 3)
    assert a == _run(3, 3)[0]
    assert _run(4, 3)[0][1:] != a[1:]
    assert a[0][:2] == [Genome(SEEDS[0]).genome_id, Genome(SEEDS[1]).genome_id]
    seen: set[str] = set()
    for ids in a:
        assert len(ids) == 6 and len(set(ids)) == 6  # a full, duplicate-free generation
        assert not seen & set(ids)  # nothing told before is asked again
        seen |= set(ids)


def test_replay_from_told_figures_asks_the_same_genomes() -> None:
    asked, history = _run(5, 3)
    fresh = _algorithm()
    fresh.setup(_problem(), termination=("n_gen", 100), seed=5,  # type: ignore[attr-defined]
                verbose=False)
    for ids, (F, G) in zip(asked[:2], history[:2], strict=True):
        pop = fresh.ask()  # type: ignore[attr-defined]
        assert [genome_key(x) for x in pop.get("X")] == ids
        _tell(fresh, pop, F.copy(), G.copy())
    nxt = fresh.ask()  # type: ignore[attr-defined]
    assert [genome_key(x) for x in nxt.get("X")] == asked[2]


def test_preselection_changes_what_is_asked() -> None:
    with_model = _run(3, 3)[0]
    without = _run(3, 3, surrogate=False)[0]
    assert with_model[1:] != without[1:]


def test_runs_stored_before_the_surrogate_replay_without_it() -> None:
    doc = search_config().to_json()
    assert doc["operators"]["surrogate"] is True
    del doc["operators"]["surrogate"]
    stored = SearchConfig.model_validate(doc, context={"stored": True})
    assert stored.operators.surrogate is False
    assert SearchConfig.model_validate(doc).operators.surrogate is True


def test_a_cost_is_never_predicted_far_below_every_told_ratio() -> None:
    """A genome unlike every told one can extrapolate the ratio (measured / analytic) to zero
    or below; the prediction then stays at half the lowest told ratio instead of 1e-3 of the
    mean (once 1000x too cheap, which pre-selection favours)."""
    from star.search.features import Costs, features

    key = parse_metric("ttft_ms@2048/x86")
    model = Surrogate([key], [], lambda g: g.to_spec(), Quant.Q4_0, min_points=2)
    archive = Archive()
    genomes = sample(12, 0)
    told_ = [features(key, Costs.of(Genome(g).to_spec(), Quant.Q4_0)).base * 2.0
             for g in genomes]  # a device exactly 2x the analytic base
    archive.add(np.array(genomes), np.array(told_)[:, None], np.zeros((len(genomes), 1)))
    model.fit(archive)
    # a model that extrapolates to a negative ratio for this genome
    model.models[key.name].predict = lambda X: (np.full(len(X), -5.0),  # type: ignore
                                                     np.zeros(len(X)))
    log_pred, _, _ = model.predict_log(key, [genomes[0]])
    base = features(key, Costs.of(Genome(genomes[0]).to_spec(), Quant.Q4_0)).base
    assert math.exp(log_pred[0]) == pytest.approx(base * 1.0, rel=1e-3)  # 0.5 x ratio 2.0

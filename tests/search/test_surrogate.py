"""Surrogate-assisted pre-selection: accurate enough to rank, deterministic, replayable.

The "device" here is a small simulated one (not the benchmark's): per-kind kernel efficiencies,
per-layer and fixed overheads, compute buffers and multiplicative noise seeded by the genome id,
so it deviates from the analytic cost model the way a device does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymoo.core.evaluator import Evaluator
from pymoo.core.problem import Problem
from pymoo.problems.static import StaticProblem

from star.cost import Quant, count_params, prefill_flops, ttft_seconds
from star.cost.flops import matmul_params_per_token
from star.cost.memory import kv_bytes, state_bytes, weight_bytes
from star.cost.roofline import DeviceRoofline
from star.genome import VECTOR_LENGTH, Genome, load_genome
from star.genome.encoding import LOWER, UPPER
from star.genome.spec import ArchSpec, AttentionSpec, ShortConvSpec, SSMSpec, TokenMixer
from star.search.config import OperatorSettings, SearchConfig
from star.search.evaluate import MISSING
from star.search.objectives import parse_metric
from star.search.operators import GenomeSampling, build_nsga2, genome_key
from star.search.preselect import hv_greedy, rank_and_crowding
from star.search.runtime_fit import make_constraint
from star.search.surrogate import Archive, Ridge, Surrogate, budget_value, rank_space
from tests.conftest import GENOMES
from tests.search.conftest import search_config

CONTEXT = 2048
LIMIT = 600.0  # peak RSS budget, MiB
OBJECTIVES = [parse_metric(n) for n in ("quality", f"ttft_ms@{CONTEXT}/x86",
                                        f"peak_rss_mb@{CONTEXT}/x86")]
BUDGETS = [(parse_metric(f"peak_rss_mb@{CONTEXT}/x86"), LIMIT)]
BASE = load_genome(GENOMES / "lfm2-350m.yaml").genes
SEEDS = [BASE, load_genome(GENOMES / "lfm2-350m-swa.yaml").genes]
CONSTRAINT = make_constraint(lambda g: g.to_spec())


def device(spec: ArchSpec, genome_id: str) -> np.ndarray:
    """(quality, TTFT ms, peak RSS MiB) of a simulated device + proxy training."""
    eff = 1e3 / 150e9  # ms per FLOP at full efficiency
    ms = 2 * matmul_params_per_token(spec) * CONTEXT * eff / 0.7
    for layer in spec.layers:
        m = layer.mixer
        if isinstance(m, AttentionSpec):
            ms += 4 * m.n_heads * m.head_dim * CONTEXT * (CONTEXT + 1) / 2 * eff / 0.25
        elif isinstance(m, ShortConvSpec):
            ms += CONTEXT * 2 * (m.kernel + 1) * spec.d_model * eff / 0.2
        elif isinstance(m, SSMSpec):
            ms += CONTEXT * 5 * m.d_inner * m.state * eff / 0.1
    ms += 0.5 * spec.n_layers + 10.0
    rss = (weight_bytes(spec, Quant.Q4_0) + kv_bytes(spec, CONTEXT) + state_bytes(spec)
           + 2048 * 4 * spec.d_model * 8) / 2**20 + 40.0
    n = max(count_params(spec).non_embedding, 1)
    share = len(spec.layers_of(TokenMixer.ATTENTION)) / max(spec.n_layers, 1)
    quality = 2.0 + 300.0 * n**-0.3 + 0.2 * math.exp(-6.0 * share)
    noise = np.exp(np.array([0.01, 0.03, 0.02])
                   * np.random.default_rng(int(genome_id[:16], 16)).standard_normal(3))
    return np.array([quality, ms, rss]) * noise


def told(vec: tuple[int, ...]) -> tuple[np.ndarray, list[float]]:
    """F and G as ``star.search.evaluate`` forms them."""
    f = device(Genome(vec).to_spec(), genome_key(vec))
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


def test_predictions_rank_held_out_genomes_better_than_the_analytic_model() -> None:
    genomes = sample(90, seed=1)
    train, test = genomes[:50], genomes[50:]
    archive = Archive()
    rows = [told(v) for v in train]
    archive.add(np.array(train), np.array([f for f, _ in rows]), np.array([g for _, g in rows]))
    model = surrogate().fit(archive)
    F_pred, G_pred = model.predict(test)
    truth = rank_space(np.array([told(v)[0] for v in test]))
    for j in range(3):
        assert spearman(F_pred[:, j], truth[:, j]) > 0.9, OBJECTIVES[j].name
    # the device deviates from the roofline (attention and conv run below peak, overheads,
    # buffers): the fitted model is closer than the analytic one, scaled by its mean ratio
    roof = np.log([ttft_seconds(Genome(v).to_spec(), CONTEXT, DeviceRoofline("r", 20e9, 150e9),
                                Quant.Q4_0) * 1e3 for v in test])
    roof += np.mean(truth[:, 1] - roof)
    assert np.sqrt(np.mean((F_pred[:, 1] - truth[:, 1]) ** 2)) < 0.6 * np.sqrt(
        np.mean((roof - truth[:, 1]) ** 2))
    # the budget column is predicted in MiB: feasibility agrees for most held-out genomes
    feasible = np.exp(truth[:, 2]) <= LIMIT
    assert np.mean((G_pred[:, 0] <= 0) == feasible) > 0.85


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

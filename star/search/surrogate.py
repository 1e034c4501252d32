"""An online surrogate of a run's objectives and budgets, fitted on every told candidate.

Device time is the scarce resource of a search: each candidate costs an export, a profile job per
device class and a proxy training. Offspring, on the other hand, are free. The surrogate lets the
search make many offspring and send to the devices only those predicted to improve the front
(``star.search.operators.SurrogateMating``).

**Model.** One ridge regression per metric key on *analytic* features of the genome at deployment
scale (``star.search.features``, from ``star.cost``), chosen per metric and context:

- a cost measured on a device (TTFT, decode latency, peak RSS at a context) is modelled as its
  analytic base (prefill FLOPs; bytes read per token; weights + KV + state, the pre-screen's
  lower bound) times a ratio that is linear in the shares of the cost's components (matmul,
  attention, windowed attention, conv, SSM FLOPs; weight, KV, state bytes) and in per-layer,
  per-width and fixed overheads relative to the base. That is exact for a device that spends a
  fixed time or memory per unit of each component, whatever the constants, so the regression
  learns how the device deviates from the analytic model (kernel efficiencies, overheads,
  compute buffers). It minimises relative errors (multiplicative noise);
- quality (proxy loss) by the log of the loss, linear in log parameter counts, log depth and
  width and the share of each token mixer;
- analytic metrics (``params``, ``active_params``, ``kv_bytes_per_token``) are known exactly.

The ridge penalty is chosen per metric by exact leave-one-out error, so nothing is tuned per run;
ridge shrinks towards the mean, so with little data a cost is its analytic base times the mean
observed ratio, and before any data the analytic base orders genomes (``predict_log``'s
"calibrated" False). numpy only: a few hundred points of a dozen features.

**Data** comes only from what was told (``Archive``, filled by ``ArchiveCallback`` after each
``tell``): F values below ``MISSING`` and, for fully evaluated candidates (last G column 0), the
budget values recovered exactly from G (``star.search.evaluate``: ``g = (v - max) / max``). The
engine's deterministic replay re-tells the stored F/G, so a resumed engine holds the same archive
and the same surrogate, and asks the same genomes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np

from star.cost import Quant
from star.genome import ArchSpec, Genome
from star.search.evaluate import MISSING
from star.search.features import Costs, features
from star.search.objectives import ANALYTIC, Bound, MetricKey

log = logging.getLogger(__name__)

_VALID = MISSING / 10  # an F or G entry at or above this is "missing", not a value
_LAMBDAS = np.logspace(-3, 4, 15)  # ridge penalties tried (relative to the number of points)
# decimals of predicted and told log values: a last-bit difference between two machines' BLAS
# must not change a choice on resume (ties then go to the lower index)
_ROUND = 6


class Ridge:
    """Ridge regression with an unpenalised intercept; the penalty by exact leave-one-out error.

    Fits ``y ~ b + X w``. ``relative``: least squares of *relative* errors (weights 1 / y^2),
    for a positive ``y`` with multiplicative noise (a ratio of a measured figure to its analytic
    base): otherwise the few genomes with the largest ratios would decide the fit. ``predict``
    gives the mean and a predictive standard deviation (leave-one-out RMSE, widened by the
    leverage of the new point; relative when ``relative``, i.e. about a log-scale sd)."""

    def __init__(self, relative: bool = False) -> None:
        self.relative = relative
        self.n = 0
        self.mean_y = 0.0
        self.floor: float | None = None  # the lowest credible prediction (set by its owner)
        self.sigma = 0.0
        self.beta: np.ndarray | None = None
        self.M_inv = np.zeros((0, 0))
        self.mu = self.sd = np.zeros(0)
        self.keep = np.zeros(0, dtype=bool)
        self.w_mean = 1.0

    def _design(self, X: np.ndarray) -> np.ndarray:
        Z = ((np.asarray(X, dtype=float) - self.mu) / self.sd)[:, self.keep]
        return np.hstack([np.ones((len(Z), 1)), Z])

    def fit(self, X: np.ndarray, y: np.ndarray) -> Ridge:
        y = np.asarray(y, dtype=float)
        self.n = len(y)
        w = 1.0 / np.maximum(y, 1e-300) ** 2 if self.relative else np.ones(self.n)
        self.mean_y = float(np.sum(w * y) / np.sum(w)) if self.n else 0.0
        spread = np.sqrt(w) * (y - self.mean_y)
        self.sigma = float(np.sqrt(np.mean(spread**2))) if self.n > 1 else 0.0
        self.beta = None
        if self.n < 3:
            return self
        self.mu = X.mean(axis=0)
        sd = X.std(axis=0)
        self.keep = sd > 1e-9 * np.maximum(np.abs(self.mu), 1e-300)  # scale-free "varies"
        self.sd = np.where(self.keep, sd, 1.0)
        if not self.keep.any():  # nothing varies: the mean is all there is
            return self
        self.w_mean = float(np.mean(w))
        sw = np.sqrt(w / self.w_mean)
        A = self._design(X) * sw[:, None]
        yw = y * sw
        penalty = np.eye(A.shape[1])
        penalty[0, 0] = 0.0  # the intercept is not shrunk
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        for lam in _LAMBDAS[::-1]:  # on equal error the larger penalty wins
            M_inv = np.linalg.inv(A.T @ A + lam * self.n * penalty)
            beta = M_inv @ A.T @ yw
            h = np.einsum("ij,jk,ik->i", A, M_inv, A)
            loo = (yw - A @ beta) / np.maximum(1.0 - h, 1e-6)
            err = float(np.mean(loo**2))
            if best is None or err < best[0] * (1 - 1e-9):
                best = (err, beta, M_inv)
        assert best is not None
        err, self.beta, self.M_inv = best
        # in the weighted space a residual is relative (weights 1 / y^2, mean-normalised)
        self.sigma = math.sqrt(err * self.w_mean) if self.relative else math.sqrt(err)
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.beta is None:
            sd = self.sigma if self.sigma > 0 else 1.0
            return np.full(len(X), self.mean_y), np.full(len(X), sd)
        A = self._design(X)
        mean = A @ self.beta
        scale = np.ones(len(X))
        if self.relative:  # the new point's weight, as in the fit
            scale = 1.0 / (np.maximum(np.abs(mean), 1e-300) * math.sqrt(self.w_mean))
        lev = np.einsum("ij,jk,ik->i", A, self.M_inv, A) * scale**2
        return mean, self.sigma * np.sqrt(1.0 + lev)


class Archive:
    """Every told candidate in told order: genome id, F row and G row (exact floats)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.vectors: list[tuple[int, ...]] = []
        self.F: list[np.ndarray] = []
        self.G: list[np.ndarray] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, genome_id: object) -> bool:
        return genome_id in self._index

    def add(self, X: np.ndarray, F: np.ndarray, G: np.ndarray) -> None:
        """Told rows; a genome told again (a repeat) keeps its first values."""
        for x, f, g in zip(X, F, G, strict=True):
            vec = tuple(int(v) for v in x)
            gid = Genome(vec).genome_id
            if gid in self._index:
                continue
            self._index[gid] = len(self.ids)
            self.ids.append(gid)
            self.vectors.append(vec)
            self.F.append(np.asarray(f, dtype=float))
            self.G.append(np.asarray(g, dtype=float))


def budget_value(g: float, limit: float) -> float:
    """The metric value behind an upper budget's column (``Bound.value_of``)."""
    return Bound(MetricKey("params"), limit).value_of(g)


class Surrogate:
    """Predicts F and G (``star.search.evaluate``'s layout) of genomes never evaluated.

    ``deploy`` maps a genome to the deployment-scale spec that is measured; ``min_points``: a
    metric with fewer observations than this is predicted by its analytic base alone."""

    def __init__(self, objectives: Sequence[MetricKey],
                 budgets: Sequence[Bound | tuple[MetricKey, float]],
                 deploy: Callable[[Genome], ArchSpec],
                 quant: Quant, *, cache_bytes_per_element: float = 2, min_points: int = 6
                 ) -> None:
        self.objectives = list(objectives)
        self.budgets = [Bound.of(b) for b in budgets]
        self.deploy = deploy
        self.quant = quant
        self.cache_bytes_per_element = cache_bytes_per_element
        self.min_points = min_points
        self.models: dict[str, Ridge] = {}
        self._costs: dict[tuple[int, ...], Costs] = {}
        self.n_fitted = 0

    def costs(self, vector: Sequence[int]) -> Costs:
        vec = tuple(int(v) for v in vector)
        if vec not in self._costs:
            spec = self.deploy(Genome(vec))
            self._costs[vec] = Costs.of(spec, self.quant, self.cache_bytes_per_element)
        return self._costs[vec]

    def keys(self) -> list[MetricKey]:
        out = list(self.objectives)
        out += [b.key for b in self.budgets if b.key not in out]
        return [k for k in out if k.metric not in ANALYTIC]

    def observations(self, archive: Archive, key: MetricKey) -> list[tuple[int, float]]:
        """(archive row, value) of every told value of ``key``."""
        out: list[tuple[int, float]] = []
        j = self.objectives.index(key) if key in self.objectives else None
        b = next((i for i, bound in enumerate(self.budgets) if bound.key == key), None)
        for i, (f, g) in enumerate(zip(archive.F, archive.G, strict=True)):
            v = None
            if j is not None and abs(f[j]) < _VALID:
                v = float(f[j])
            elif b is not None and g[-1] == 0 and abs(g[b]) < _VALID:
                v = self.budgets[b].value_of(float(g[b]))
            if v is not None and math.isfinite(v) and v > 0:
                out.append((i, v))
        return out

    def fit(self, archive: Archive) -> Surrogate:
        """Refit every model on the archive (cheap: a few hundred rows)."""
        self.models = {}
        for key in self.keys():
            obs = self.observations(archive, key)
            if not obs:
                continue
            rows = [features(key, self.costs(archive.vectors[i])) for i, _ in obs]
            values = np.array([v for _, v in obs])
            base = np.array([r.base for r in rows])
            y = values / base if rows[0].additive else np.log(values)
            X = np.array([r.x for r in rows])
            model = Ridge(relative=rows[0].additive)
            # too little data: the mean alone (for a cost, the analytic base times the mean
            # observed ratio)
            model.fit(X if len(obs) >= self.min_points else X[:, :0], y)
            # an additive cost's ratio to its analytic base never drops far below what any
            # device showed: a linear extrapolation to zero or below (a genome unlike every
            # told one) would otherwise predict it 1000x too cheap, and pre-selection would
            # favour exactly that genome
            model.floor = 0.5 * float(y.min()) if rows[0].additive else None
            self.models[key.name] = model
        self.n_fitted = len(archive)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("surrogate on %d told: %s", len(archive), ", ".join(
                f"{k} n={m.n} loo-rmse={m.sigma:.3g}" for k, m in self.models.items()))
        return self

    def predict_log(self, key: MetricKey, vectors: Sequence[Sequence[int]] | np.ndarray,
                    costs: Sequence[Costs] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """(log value, its sd, calibrated) per vector; calibrated False: only the order is
        meaningful (a metric never observed, predicted by its analytic base)."""
        costs = costs if costs is not None else [self.costs(v) for v in vectors]
        exact = [c.analytic(key) for c in costs]
        if all(e is not None for e in exact):
            return (np.log(np.maximum(np.array(exact, dtype=float), 1e-12)),
                    np.zeros(len(costs)), True)
        rows = [features(key, c) for c in costs]
        base = np.array([r.base for r in rows])
        model = self.models.get(key.name)
        if model is None:  # never observed: the analytic base (in MiB a lower bound of RSS)
            return np.log(base), np.ones(len(costs)), key.metric == "peak_rss_mb"
        mean, sd = model.predict(np.array([r.x for r in rows]))
        if rows[0].additive:  # sd is relative already
            floor = model.floor if model.floor is not None else 1e-3 * max(model.mean_y, 1e-12)
            ratio = np.maximum(mean, max(floor, 1e-12))
            return np.round(np.log(base * ratio), _ROUND), sd, True
        return np.round(mean, _ROUND), sd, True

    def nadir(self) -> np.ndarray:
        """Per objective, in ``rank_space``: the log of its budget when it is also a budget
        (nothing worse is feasible), else NaN."""
        limits = {b.name: b.limit for b in self.budgets if not b.lower}
        return np.array([math.log(max(limits[k.name], 1e-12)) if k.name in limits else np.nan
                         for k in self.objectives])

    def predict(self, vectors: Sequence[Sequence[int]] | np.ndarray, *, optimism: float = 0.0
                ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (log F, G) of ``vectors``: F in ``rank_space`` (the log of each objective,
        which orders genomes as F does), G as ``star.search.evaluate`` forms it, its last
        column ("not evaluated") 0. ``optimism`` k lowers each objective by k sd (an optimistic
        bound, for exploration). A budget never observed and without an analytic bound predicts
        0 (unknown, as in evaluate)."""
        n = len(vectors)
        costs = [self.costs(v) for v in vectors]
        F = np.zeros((n, len(self.objectives)))
        for j, key in enumerate(self.objectives):
            mean, sd, _ = self.predict_log(key, vectors, costs)
            F[:, j] = mean - optimism * sd
        G = np.zeros((n, len(self.budgets) + 1))
        for b, bound in enumerate(self.budgets):
            key = bound.key
            mean, _, calibrated = self.predict_log(key, vectors, costs)
            if not calibrated:
                continue
            value = np.exp(mean)
            bounds = [c.lower_bound(key) for c in costs]
            value = np.array([max(x, lb) if lb is not None else x
                              for x, lb in zip(value, bounds, strict=True)])
            G[:, b] = [bound.violation(float(x)) for x in value]
        return F, G


def rank_space(F: np.ndarray) -> np.ndarray:
    """Told F in the space of ``Surrogate.predict``: the log of each (positive) objective."""
    return np.round(np.log(np.maximum(np.asarray(F, dtype=float), 1e-12)), _ROUND)

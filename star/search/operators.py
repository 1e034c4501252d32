"""pymoo operators over genome vectors: Sampling, Crossover, Mutation, Repair, duplicates.

pymoo sees a genome as a row of ``VECTOR_LENGTH`` integers. Every operator delegates to
``star.genome`` (which always returns repaired, canonical vectors) and takes pymoo's explicit
``random_state`` generator, so the same seed gives the same genomes. A ``Constraint`` (e.g. "the
target runtime must run it", "fits the memory budget") is enforced inside Repair and Sampling:
pymoo never sees a genome that would waste device time. The search's constraint
(``star.search.runtime_fit.make_constraint``) fits every offspring to the NEAREST exportable
llama.cpp architecture, so mutation and crossover move genomes between families (an LFM2 whose
short convs became SSM blocks continues as a granitehybrid) instead of losing them.

``SurrogateMating`` (``OperatorSettings.surrogate``) makes ``oversample`` times more offspring
than it is asked for and keeps those that ``star.search.surrogate`` predicts to be best, so
device time goes to the most promising genomes; ``build_nsga2`` assembles the algorithm the
engine and the benchmarks use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pymoo.core.callback import Callback
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mating import Mating
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

from star.genome import Genome, Resolution, crossover, mutate, random_genome, repair

if TYPE_CHECKING:
    from pymoo.algorithms.moo.nsga2 import NSGA2

    from star.search.config import OperatorSettings
    from star.search.surrogate import Archive, Surrogate

# A constraint maps a canonical vector to a canonical vector that satisfies it, or None when it
# cannot (the genome is then replaced by another random or parent genome).
Constraint = Callable[[tuple[int, ...]], tuple[int, ...] | None]

_MAX_TRIES = 50
_GIVE_UP = 2000  # sampling tries per sample before a constraint is declared impossible


def genome_key(row: Sequence[int]) -> str:
    """Identity of a row: the genome id (sha256 of the canonical form), never Python hash()."""
    return Genome(tuple(int(x) for x in row)).genome_id


def _constrained(vec: tuple[int, ...], constraint: Constraint | None) -> tuple[int, ...] | None:
    vec = repair(vec)
    return constraint(vec) if constraint else vec


def mutate_constrained(parent: tuple[int, ...], rng: np.random.Generator,
                       constraint: Constraint | None, *, n_mutations: int = 1,
                       resolution: Resolution | None = None,
                       tries: int = _MAX_TRIES) -> tuple[int, ...] | None:
    """A child of ``parent`` by ``n_mutations`` mutations that satisfies ``constraint`` and is
    not the parent itself (a fit can undo a mutation: it is then drawn again), or None after
    ``tries`` draws. Used by ``HierarchicalMutation`` and by ``star genome mutate``."""
    for _ in range(tries):
        child = parent
        for _ in range(n_mutations):
            child = mutate(child, rng, resolution)
        v = _constrained(child, constraint)
        if v is not None and v != parent:
            return v
    return None


class GenomeSampling(Sampling):
    """Initial population: seed genomes first (from files), then random valid genomes."""

    def __init__(self, seeds: Sequence[tuple[int, ...]] = (), constraint: Constraint | None = None,
                 base: tuple[int, ...] | None = None, n_layers: tuple[int, int] = (4, 24)
                 ) -> None:
        super().__init__()
        self.seeds = list(seeds)
        self.constraint = constraint
        self.base = base
        self.n_layers = n_layers

    def seed_rows(self) -> list[tuple[int, ...]]:
        """The seeds as they start every sample: constrained, distinct, in order."""
        rows: list[tuple[int, ...]] = []
        for s in self.seeds:
            v = _constrained(s, self.constraint)
            if v is not None and v not in rows:
                rows.append(v)
        return rows

    def _do(self, problem: Any, n_samples: int, *args: Any,
            random_state: np.random.Generator | None = None, **kwargs: Any) -> np.ndarray:
        rng = random_state or np.random.default_rng()
        rows = self.seed_rows()[:n_samples]
        seen: set[tuple[int, ...]] = set(rows)
        tries = 0
        while len(rows) < n_samples:
            tries += 1
            if self.seeds and rng.random() < 0.5:
                # a mutant of a seed keeps the population near known-good designs
                parent = self.seeds[int(rng.integers(len(self.seeds)))]
                cand = mutate(parent, rng)
            else:
                cand = random_genome(rng, n_layers=self.n_layers, base=self.base)
            v = _constrained(cand, self.constraint)
            if v is not None and (v not in seen or tries > _MAX_TRIES * n_samples):
                rows.append(v)
                seen.add(v)
            elif tries > _GIVE_UP * n_samples:
                raise RuntimeError(
                    f"sampling: {len(rows)} of {n_samples} genomes after {tries} tries: the "
                    "constraint (allowed_archs, allowed operators, base genome) leaves too "
                    "little to search")
        return np.array(rows, dtype=np.int64)


class SurrogateSampling(Sampling):
    """Initial population: the seeds, then the best of ``oversample`` x as many samples of
    ``sampling`` by the surrogate's prediction before any data (analytic costs only: FLOPs and
    bytes order latency, the peak-RSS lower bound rules out what cannot meet its budget, more
    non-embedding parameters mean lower loss), ranked by ``rank_and_crowding`` with the seeds:
    the first generation spreads over the analytic front instead of over the sampler."""

    def __init__(self, sampling: GenomeSampling, surrogate: Surrogate, oversample: int = 6
                 ) -> None:
        super().__init__()
        self.sampling = sampling
        self.surrogate = surrogate
        self.oversample = oversample

    def _do(self, problem: Any, n_samples: int, *args: Any,
            random_state: np.random.Generator | None = None, **kwargs: Any) -> np.ndarray:
        from star.search.preselect import rank_and_crowding

        X = self.sampling._do(problem, n_samples * max(self.oversample, 1),
                              random_state=random_state)
        keep: list[int] = []
        ids: set[str] = set()
        for i, row in enumerate(X):  # distinct rows, seeds (the first rows) first
            gid = genome_key(row)
            if gid not in ids:
                ids.add(gid)
                keep.append(i)
        n_seeds = min(len(self.sampling.seed_rows()), n_samples)
        seeds, rest = keep[:n_seeds], keep[n_seeds:]
        if len(seeds) + len(rest) <= n_samples:
            return X[seeds + rest]
        F, G = self.surrogate.predict(X[seeds + rest])
        m = len(seeds)
        pick = rank_and_crowding(F[:m], G[:m], F[m:], G[m:], n_samples - m)
        return X[seeds + [rest[i] for i in sorted(pick)]]


class LayerwiseCrossover(Crossover):
    """Two parents -> two children by layer-wise two-point crossover."""

    def __init__(self, constraint: Constraint | None = None, prob: float = 0.9) -> None:
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)
        self.constraint = constraint

    def _do(self, problem: Any, X: np.ndarray, *args: Any,
            random_state: np.random.Generator | None = None, **kwargs: Any) -> np.ndarray:
        rng = random_state or np.random.default_rng()
        _, n_matings, n_var = X.shape
        Y = np.empty((2, n_matings, n_var), dtype=np.int64)
        for k in range(n_matings):
            a, b = tuple(int(x) for x in X[0, k]), tuple(int(x) for x in X[1, k])
            c1, c2 = crossover(a, b, rng)
            Y[0, k] = _constrained(c1, self.constraint) or repair(a)
            Y[1, k] = _constrained(c2, self.constraint) or repair(b)
        return Y


class HierarchicalMutation(Mutation):
    """One mutation per offspring at a random resolution (backbone, operator, featurizer);
    retried until the constraint holds, else the parent is kept."""

    def __init__(self, constraint: Constraint | None = None, prob: float = 1.0,
                 n_mutations: int = 1) -> None:
        super().__init__(prob=prob)
        self.constraint = constraint
        self.n_mutations = n_mutations

    def _do(self, problem: Any, X: np.ndarray, *args: Any,
            random_state: np.random.Generator | None = None, **kwargs: Any) -> np.ndarray:
        rng = random_state or np.random.default_rng()
        out = np.array(X, dtype=np.int64)
        for i, row in enumerate(X):
            parent = tuple(int(x) for x in row)
            v = mutate_constrained(parent, rng, self.constraint, n_mutations=self.n_mutations)
            if v is not None:
                out[i] = v
        return out


class GenomeRepair(Repair):
    """Maps any row to the nearest valid genome that satisfies the constraint."""

    def __init__(self, constraint: Constraint | None = None) -> None:
        super().__init__()
        self.constraint = constraint

    def _do(self, problem: Any, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        out = np.array(X, dtype=np.int64)
        for i, row in enumerate(X):
            vec = tuple(int(x) for x in row)
            v = _constrained(vec, self.constraint)
            out[i] = v if v is not None else repair(vec)
        return out


class GenomeDuplicateElimination(DuplicateElimination):
    """Two individuals are duplicates iff their genome ids are equal."""

    def _do(self, pop: Any, other: Any, is_duplicate: np.ndarray) -> np.ndarray:
        seen: set[str] = set()
        if other is not None:
            seen.update(genome_key(ind.X) for ind in other)
        for i, ind in enumerate(pop):
            key = genome_key(ind.X)
            if key in seen:
                is_duplicate[i] = True
            else:
                seen.add(key)
        return is_duplicate


class ArchiveCallback(Callback):
    """After every ``tell``: the told genomes with their F and G into the surrogate's archive
    (and nothing else: the archive is rebuilt exactly by the engine's replay)."""

    def __init__(self, archive: Archive) -> None:
        super().__init__()
        self.archive = archive

    def notify(self, algorithm: Any) -> None:
        off = algorithm.off
        if off is not None and len(off):
            self.archive.add(off.get("X"), off.get("F"), off.get("G"))


class SurrogateMating(Mating):
    """Mating that makes ``oversample`` x the offspring asked for (same selection, crossover,
    mutation, repair; a share ``immigrants`` of them fresh from ``sampling`` instead), drops
    genomes already told or repeated, and keeps the best by the surrogate's predictions
    (``star.search.preselect``: ``"hv"`` greedy hypervolume gain over everything told, the
    rest by rank and crowding with the population; ``"rank"`` the latter only).

    The surrogate is refitted on the archive before each pre-selection, so its data are exactly
    the told F/G: a replayed engine asks the same genomes."""

    def __init__(self, selection: Any, crossover: Any, mutation: Any, *, surrogate: Surrogate,
                 archive: Archive, oversample: int = 6, optimism: float = 0.0,
                 selector: str = "hv", sampling: GenomeSampling | None = None,
                 immigrants: float = 0.0, **kwargs: Any) -> None:
        super().__init__(selection, crossover, mutation, **kwargs)
        self.surrogate = surrogate
        self.archive = archive
        self.oversample = oversample
        self.optimism = optimism
        self.selector = selector
        self.sampling = sampling
        self.immigrants = immigrants

    def _pool(self, problem: Any, pop: Any, n: int, random_state: Any,
              **kwargs: Any) -> list[Any]:
        """Up to ``n`` distinct offspring never told (immigrants first, then mating)."""
        pool: list[Any] = []
        seen: set[str] = set()

        def take(rows: Any) -> None:
            for ind in rows:
                gid = genome_key(ind.X)
                if gid not in seen and gid not in self.archive and len(pool) < n:
                    seen.add(gid)
                    pool.append(ind)

        sampling = self.sampling
        n_new = int(round(n * self.immigrants))
        if sampling is not None and n_new:
            # the sampler starts with the seeds (told already): draw that many more
            X = sampling._do(problem, n_new + len(sampling.seeds), random_state=random_state)
            take(Population.new(X=np.asarray(X)))
        for _ in range(3):  # top up when repeats of told genomes were dropped
            before = len(pool)
            off = super().do(problem, pop, n - len(pool), random_state=random_state, **kwargs)
            take(off)
            if len(pool) >= n or len(pool) == before:
                break
        return pool

    def do(self, problem: Any, pop: Any, n_offsprings: int, random_state: Any = None,
           **kwargs: Any) -> Any:
        from star.search.preselect import hv_greedy, rank_and_crowding
        from star.search.surrogate import rank_space

        pool = self._pool(problem, pop, n_offsprings * max(self.oversample, 1), random_state,
                          **kwargs)
        if len(pool) <= n_offsprings:
            return Population.create(*pool)
        X = np.array([ind.X for ind in pool], dtype=np.int64)
        self.surrogate.fit(self.archive)
        F_new, G_new = self.surrogate.predict(X, optimism=self.optimism)
        pick: list[int] = []
        if self.selector == "hv" and len(self.archive):
            pick = hv_greedy(rank_space(np.array(self.archive.F)), np.array(self.archive.G),
                             F_new, G_new, n_offsprings, nadir=self.surrogate.nadir())
        rest = [i for i in range(len(pool)) if i not in set(pick)]
        if len(pick) < n_offsprings:
            more = rank_and_crowding(rank_space(pop.get("F")), np.asarray(pop.get("G")),
                                     F_new[rest], G_new[rest], n_offsprings - len(pick))
            pick += [rest[i] for i in more]
        return Population.create(*[pool[i] for i in sorted(pick)])


def build_nsga2(*, pop_size: int, constraint: Constraint | None, settings: OperatorSettings,
                seeds: Sequence[tuple[int, ...]] = (), base: tuple[int, ...] | None = None,
                surrogate: Surrogate | None = None) -> NSGA2:
    """NSGA-II with the genome operators of ``settings``; with ``surrogate`` (and
    ``settings.surrogate``) offspring are pre-selected by ``SurrogateMating``."""
    from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
    from pymoo.operators.selection.tournament import TournamentSelection

    from star.search.surrogate import Archive

    sampling = GenomeSampling(seeds=seeds, constraint=constraint, base=base,
                              n_layers=settings.layers)
    cross = LayerwiseCrossover(constraint=constraint, prob=settings.crossover_prob)
    mutation = HierarchicalMutation(constraint=constraint, prob=settings.mutation_prob,
                                    n_mutations=settings.n_mutations)
    repair_op = GenomeRepair(constraint=constraint)
    duplicates = GenomeDuplicateElimination()
    if surrogate is None or not settings.surrogate:
        return NSGA2(pop_size=pop_size, sampling=sampling, crossover=cross, mutation=mutation,
                     repair=repair_op, eliminate_duplicates=duplicates)
    archive = Archive()
    first = SurrogateSampling(sampling, surrogate, settings.oversample)
    mating = SurrogateMating(
        TournamentSelection(func_comp=binary_tournament), cross, mutation,
        surrogate=surrogate, archive=archive, oversample=settings.oversample,
        optimism=settings.optimism, selector=settings.preselect, sampling=sampling,
        immigrants=settings.immigrants, repair=repair_op, eliminate_duplicates=duplicates,
        n_max_iterations=100)
    return NSGA2(pop_size=pop_size, sampling=first, mating=mating, repair=repair_op,
                 eliminate_duplicates=duplicates, callback=ArchiveCallback(archive))

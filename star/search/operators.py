"""pymoo operators over genome vectors: Sampling, Crossover, Mutation, Repair, duplicates.

pymoo sees a genome as a row of ``VECTOR_LENGTH`` integers. Every operator delegates to
``star.genome`` (which always returns repaired, canonical vectors) and takes pymoo's explicit
``random_state`` generator, so the same seed gives the same genomes. A ``Constraint`` (e.g. "the
target runtime must run it", "fits the memory budget") is enforced inside Repair and Sampling:
pymoo never sees a genome that would waste device time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

from star.genome import Genome, crossover, mutate, random_genome, repair

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

    def _do(self, problem: Any, n_samples: int, *args: Any,
            random_state: np.random.Generator | None = None, **kwargs: Any) -> np.ndarray:
        rng = random_state or np.random.default_rng()
        rows: list[tuple[int, ...]] = []
        seen: set[tuple[int, ...]] = set()
        for s in self.seeds:
            v = _constrained(s, self.constraint)
            if v is not None and v not in seen and len(rows) < n_samples:
                rows.append(v)
                seen.add(v)
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
            for _ in range(_MAX_TRIES):
                child = parent
                for _ in range(self.n_mutations):
                    child = mutate(child, rng)
                v = _constrained(child, self.constraint)
                if v is not None and v != parent:
                    out[i] = v
                    break
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

"""The genome operators inside pymoo's NSGA-II, driven by ask/tell."""

from __future__ import annotations

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.evaluator import Evaluator
from pymoo.core.problem import Problem
from pymoo.problems.static import StaticProblem

from star.cost import count_params, kv_bytes_per_token
from star.genome import VECTOR_LENGTH, Genome, load_genome, validate_vector
from star.genome.encoding import LOWER, UPPER
from star.search.operators import (
    GenomeDuplicateElimination,
    GenomeRepair,
    GenomeSampling,
    HierarchicalMutation,
    LayerwiseCrossover,
    genome_key,
)
from tests.conftest import GENOMES
from tests.support.other_process import in_another_process

SEED = load_genome(GENOMES / "lfm2-350m.yaml").genes


def _objectives(X: np.ndarray) -> np.ndarray:
    """Two real, conflicting analytic objectives: parameters and KV bytes per token."""
    out = []
    for row in X:
        spec = Genome.from_vector([int(x) for x in row]).to_spec()
        out.append([count_params(spec).params / 1e6, kv_bytes_per_token(spec) / 1e3])
    return np.array(out)


def _run(seed: int, generations: int) -> list[list[str]]:
    problem = Problem(n_var=VECTOR_LENGTH, n_obj=2, xl=np.array(LOWER), xu=np.array(UPPER),
                      vtype=int)
    algo = NSGA2(pop_size=8, sampling=GenomeSampling(seeds=[SEED], base=SEED),
                 crossover=LayerwiseCrossover(), mutation=HierarchicalMutation(),
                 repair=GenomeRepair(), eliminate_duplicates=GenomeDuplicateElimination())
    algo.setup(problem, termination=("n_gen", generations), seed=seed, verbose=False)
    asked: list[list[str]] = []
    while algo.has_next():
        pop = algo.ask()
        X = pop.get("X")
        for row in X:
            assert validate_vector([int(x) for x in row]) == []
        asked.append([genome_key(r) for r in X])
        assert len(set(asked[-1])) == len(asked[-1])  # no duplicates within a generation
        Evaluator().eval(StaticProblem(problem, F=_objectives(X)), pop)
        algo.tell(infills=pop)
    return asked


def test_ask_tell_is_deterministic_across_processes_and_valid() -> None:
    a = _run(seed=11, generations=3)
    b = _run(seed=11, generations=3)
    assert a == b
    code = ("import json; from tests.search.test_operators import _run;"
            " print(json.dumps(_run(seed=11, generations=3)))")
    assert in_another_process(code, hash_seed=1) == a  # another str-hash salt, same genomes
    assert a[0][0] == Genome(SEED).genome_id  # seed genome first
    c = _run(seed=12, generations=3)
    assert c[1:] != a[1:]

"""``SearchEngine``: NSGA-II over genomes, one generation at a time, all state in the database.

One generation, each phase persisted before the next starts (``Generation.state["phase"]``):

1. **asked** - pymoo ``ask()``; the Generation row (genome ids in the asked order) and one
   Candidate per genome (deployment-scale arch spec, analytic costs) in one transaction.
2. **prescreened** - stock llama.cpp runs it (``allowed_archs``) and analytic lower bounds meet
   the budgets; else the reason is stored (``analytic_costs["prescreen"]``) and no device or
   training time is spent on it.
3. **exported** / **enqueued** - deployment scale, random weights of ``export_seed`` (latency and
   memory do not depend on weight values) -> GGUF -> the artifact store; one profile job per
   device class, recorded in the same transaction that creates it (never enqueued twice).
   Devices start measuring while the proxies train.
4. **trained** - proxy scale through ``ProxyPool``; each result is stored as soon as its chunk
   finishes; a candidate whose proxy metrics are stored is never trained again.
5. **measured** - poll the jobs until all are finished, a stop is requested, or the generation
   deadline passes (unfinished jobs are then cancelled; their candidates count as infeasible).
6. **told** - F and G from stored rows (``star.search.evaluate``), stored exactly with the
   reasons of infeasible candidates, then ``tell``.

``Generation.state``: ``genome_ids`` (asked order), ``phase``, ``candidates`` (per genome id:
candidate id, artifact id, job id per device class, export error), and once told: ``F``, ``G``,
``reasons``, ``told: true``.

**Resume is deterministic replay**: a new engine calls ``setup(seed=run.seed)`` and, for each
told generation, ``ask()`` - checking that the asked genome ids equal the stored ones - and
``tell`` of the stored F/G; pymoo's random state then equals the one the crashed engine had. An
asked-but-untold generation is continued: every phase skips what its rows show is done. The
engine talks only to the database (and the artifact store): coordinators and agents may be
other processes, and any of them, the engine included, may crash.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from star.db import Database, repo
from star.db.models import CandidateRole, JobStage
from star.db.repo import lifecycle
from star.db.session import db_now
from star.db.snapshots import GenerationSnapshot, RunSnapshot
from star.db.store import ArtifactStore
from star.genome import VECTOR_LENGTH, Genome
from star.search import store
from star.search.config import SearchConfig, check_devices
from star.search.evaluate import Evaluation
from star.search.operators import build_nsga2, genome_key
from star.search.runtime_fit import make_constraint, make_open_constraint
from star.search.steps import Steps, Stopped
from star.search.store import RunStatus

log = logging.getLogger(__name__)

PHASES = ("asked", "prescreened", "exported", "enqueued", "trained", "measured", "told")
# A "running" run whose engine was heard from more recently than this is taken to be alive.
STALE_AFTER_S = 120.0
# How often a running engine stamps its heartbeat (a thread of its own: a long proxy-training
# chunk or export must not make a live engine look dead).
HEARTBEAT_S = 10.0


class SearchError(RuntimeError):
    """The search cannot go on (replay mismatch, a run in another engine's hands, ...)."""


class ReplayMismatch(SearchError):
    """Replaying a told generation asked other genomes than the stored ones."""


class SearchEngine:
    """Drives one run. Build with ``create`` (new run) or ``open`` (resume); then ``run()``."""

    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        run: RunSnapshot,
        config: SearchConfig,
        *,
        base: tuple[int, ...] | None,
        seeds: Sequence[tuple[int, ...]],
        pool_factory: Callable[[Any], Any] | None = None,
        on_phase: Callable[[int, str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        driver: str = "cli",
        should_stop: Callable[[], str | None] | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.run_id = run.id
        self.run_name = run.name
        self.seed = int(run.seed if run.seed is not None else config.seed)
        self.config = config
        self.base = base
        self.seeds = list(seeds)
        self.on_phase = on_phase
        self.sleep = sleep
        # who drives the run (Run.config["engine"]); a coordinator adopts only "coordinator" runs
        self.owner = lifecycle.engine_identity()
        self.driver = driver
        # an outside reason to stop (its process shutting down): the run is then suspended, to
        # be continued by whoever drives runs of this kind next (a coordinator adopts it)
        self._should_stop = should_stop
        self._suspend = False
        self.clear_stop = False  # run() clears a stop request first (a user's resume)
        self.heartbeat_s = heartbeat_s
        self._lost: str | None = None  # set by the heartbeat thread: the run was taken over
        self._pool_factory = pool_factory
        self._pool: Any = None
        self.objectives = config.objective_keys()
        self.budgets = config.bounds()
        self.trained = 0  # proxy trainings this engine ran (never repeated on resume)
        self.exported = 0
        self.enqueued = 0
        self.next_index = 0
        self._replayed = False
        self.steps = Steps(db, artifacts, self.run_id, self.run_name, self.seed, config,
                           self.budgets, self._check_stop, sleep)
        self._build_algorithm()

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    def create(cls, db: Database, artifacts: ArtifactStore, config: SearchConfig,
               **kwargs: Any) -> SearchEngine:
        """Check the config against the database (devices) and create the run."""
        base, seeds = config.base_genes(), config.seed_genes()
        baselines = config.baseline_genes()
        with db.session_scope() as s:
            check_devices(config, s)
            run = repo.create_run(
                s, name=config.name, seed=config.seed,
                config={
                    "search": config.to_json(),
                    "genomes": {"base": list(base) if base else None,
                                "seeds": [list(g) for g in seeds]},
                },
            )
            lifecycle.begin(s, run_id=run.id, owner=None, driver=kwargs.get("driver", "cli"))
            for label, genes in baselines:
                genome = Genome(genes)
                spec = config.deploy_spec(genome)
                repo.add_candidate(
                    s, run_id=run.id, genome=store.genome_doc(genes), role=CandidateRole.BASELINE,
                    label=label, arch_spec={"deploy": _spec_json(spec),
                                            "proxy": _spec_json(config.proxy_spec(genome))},
                    analytic_costs=_costs(spec, config),
                )
        return cls(db, artifacts, run, config, base=base, seeds=seeds, **kwargs)

    @classmethod
    def open(cls, db: Database, artifacts: ArtifactStore, ref: str | int, *,
             force: bool = False, stale_after_s: float = STALE_AFTER_S, resume: bool = True,
             **kwargs: Any) -> SearchEngine:
        """The engine of a stored run (config and genomes as stored when it was created).
        Refuses a run whose engine was heard from within ``stale_after_s`` unless ``force``.
        ``resume``: a user asked to continue it, so an earlier stop request is cleared when it
        runs (a coordinator adopting an orphan passes False: a stop request must survive)."""
        with db.session_scope() as s:
            run = store.resolve_run(s, ref)
            now = db_now(s)
        doc = run.config or {}
        if "search" not in doc:
            raise SearchError(f"run {run.name!r} was not created by `star search run`")
        age = lifecycle.heard_within(run, now, stale_after_s)
        if age is not None and not force:
            raise SearchError(
                f"run {run.name!r} is running (its engine was heard from {age:.0f} s "
                "ago); stop it first (`star search stop`) or pass --force"
            )
        config = SearchConfig.model_validate(doc["search"], context={"stored": True})
        genomes = doc.get("genomes") or {}
        base = tuple(genomes["base"]) if genomes.get("base") else None
        seeds = [tuple(g) for g in genomes.get("seeds") or []]
        engine = cls(db, artifacts, run, config, base=base, seeds=seeds, **kwargs)
        engine.clear_stop = resume
        return engine

    def _build_algorithm(self) -> None:
        """NSGA-II with the genome operators; with ``operators.surrogate`` its offspring are
        pre-selected by a surrogate fitted only on told F/G (so replay asks the same)."""
        from pymoo.core.problem import Problem

        from star.genome.encoding import LOWER, UPPER
        from star.search.surrogate import Surrogate

        cfg = self.config
        ops = cfg.operators
        if cfg.runtime == "executorch":  # the full STAR space: nothing to fit into
            constraint = make_open_constraint(cfg.deploy_spec, token_mixers=ops.token_mixer_enums,
                                              channel_mixers=ops.channel_mixer_enums)
        else:
            constraint = make_constraint(
                cfg.deploy_spec,
                allowed_archs=tuple(cfg.allowed_archs) if cfg.allowed_archs else None,
                token_mixers=ops.token_mixer_enums,
                channel_mixers=ops.channel_mixer_enums,
            )
        self.problem = Problem(
            n_var=VECTOR_LENGTH, n_obj=len(self.objectives), n_ieq_constr=len(self.budgets) + 1,
            xl=np.array(LOWER), xu=np.array(UPPER), vtype=int,
        )
        surrogate = (Surrogate(self.objectives, self.budgets, cfg.deploy_spec, cfg.cost_quant)
                     if ops.surrogate else None)
        self.algorithm = build_nsga2(pop_size=cfg.population, constraint=constraint,
                                     settings=ops, seeds=self.seeds, base=self.base,
                                     surrogate=surrogate)
        self.algorithm.setup(self.problem, termination=("n_gen", cfg.generations),
                             seed=self.seed, verbose=False)

    # ---- the loop ---------------------------------------------------------------------------

    def run(self, *, max_generations: int | None = None) -> RunStatus:
        """Replay what is told, then run generations until done, stopped or ``max_generations``
        more were told. Returns the run's status."""
        with self.db.session_scope() as s:
            if self.clear_stop:
                lifecycle.resume(s, run_id=self.run_id)
                self.clear_stop = False
            lifecycle.start(s, run_id=self.run_id, owner=self.owner, driver=self.driver)
        beating = threading.Event()
        beat = threading.Thread(target=self._beat, args=(beating,), daemon=True,
                                name=f"heartbeat-{self.run_id}")
        beat.start()
        try:
            self.replay()
            self.baselines()
            done_here = 0
            while self.next_index < self.config.generations:
                if max_generations is not None and done_here >= max_generations:
                    return self._finish(RunStatus.STOPPED, "generation limit of this call")
                self._check_stop()
                self.generation(self.next_index)
                self.next_index += 1
                done_here += 1
            if self.config.uses_devices():
                self.steps.wait(self.baseline_ids())  # a finished run has its baselines measured
            return self._finish(RunStatus.DONE, None)
        except Stopped as exc:
            if self._lost:  # another engine drives the run now: leave its status alone
                log.warning("run %s: %s; this engine stops", self.run_name, self._lost)
                return RunStatus.STOPPED
            status = RunStatus.SUSPENDED if self._suspend else RunStatus.STOPPED
            return self._finish(status, str(exc) or "stop requested")
        except KeyboardInterrupt:
            self._finish(RunStatus.STOPPED, "interrupted")
            raise
        except Exception as exc:
            self._finish(RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            beating.set()
            beat.join(timeout=5)
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _finish(self, status: RunStatus, reason: str | None) -> RunStatus:
        with self.db.session_scope() as s:
            lifecycle.finish(s, run_id=self.run_id, status=status, reason=reason,
                             owner=self.owner)
        log.info("run %s: %s%s", self.run_name, status.value, f" ({reason})" if reason else "")
        return status

    def _check_stop(self) -> None:
        """Stamp the heartbeat; raise ``Stopped`` (with the reason) if the engine must stop."""
        reason = self._should_stop() if self._should_stop is not None else None
        self._suspend = reason is not None
        if reason is None and self._lost is None:
            with self.db.session_scope() as s:
                beat = lifecycle.heartbeat(s, run_id=self.run_id, owner=self.owner)
            if beat.taken_over_by is not None:
                self._lost = beat.reason()
            reason = beat.reason()
        reason = reason or self._lost
        if reason is not None:
            raise Stopped(reason)

    def _beat(self, done: threading.Event) -> None:
        """The heartbeat thread: stamp every ``heartbeat_s`` until ``done``; notice a takeover."""
        while not done.wait(self.heartbeat_s):
            try:
                with self.db.session_scope() as s:
                    beat = lifecycle.heartbeat(s, run_id=self.run_id, owner=self.owner)
            except Exception as exc:  # noqa: BLE001 - a database hiccup; the next beat retries
                log.warning("run %s: heartbeat failed: %s", self.run_name, exc)
                continue
            if beat.taken_over_by is not None:
                self._lost = beat.reason()
                return

    def _phase(self, gen: GenerationSnapshot, phase: str) -> None:
        with self.db.session_scope() as s:
            store.update_generation(s, generation_id=gen.id, phase=phase)
        log.info("run %s generation %d: %s", self.run_name, gen.index, phase)
        if self.on_phase is not None:
            self.on_phase(gen.index, phase)

    def _ask(self) -> tuple[Any, list[str]]:
        pop = self.algorithm.ask()
        ids = [genome_key(x) for x in pop.get("X")]
        return pop, ids

    def _tell(self, pop: Any, F: Sequence[Sequence[float]], G: Sequence[Sequence[float]]) -> None:
        from pymoo.core.evaluator import Evaluator
        from pymoo.problems.static import StaticProblem

        F_ = np.asarray(F, dtype=float).reshape(len(pop), len(self.objectives))
        G_ = np.asarray(G, dtype=float).reshape(len(pop), len(self.budgets) + 1)
        Evaluator().eval(StaticProblem(self.problem, F=F_, G=G_), pop)
        self.algorithm.tell(infills=pop)

    def replay(self) -> None:
        """Re-ask and re-tell every told generation from the stored F/G (see module doc).
        Once per engine: later calls of ``run`` continue from where the last one stopped."""
        if self._replayed:
            return
        self._replayed = True
        with self.db.session_scope(readonly=True) as s:
            gens = repo.list_generations(s, self.run_id)
        pending_seen = False
        for gen in gens:
            if gen.index != self.next_index:
                raise SearchError(f"run {self.run_name!r}: generation {gen.index} is stored "
                                  f"but generation {self.next_index} is not")
            if not gen.state.get("told"):
                pending_seen = True  # continued by the loop
                continue
            if pending_seen:
                raise SearchError(f"run {self.run_name!r}: generation {gen.index} is told but "
                                  "an earlier one is not")
            pop, ids = self._ask()
            self._check_ids(gen, ids)
            self._tell(pop, gen.state["F"], gen.state["G"])
            self.next_index += 1
            log.info("run %s generation %d: replayed", self.run_name, gen.index)

    def _check_ids(self, gen: GenerationSnapshot, ids: list[str]) -> None:
        stored = list(gen.state.get("genome_ids") or [])
        if stored != ids:
            at = next((i for i, (a, b) in enumerate(zip(ids, stored, strict=False)) if a != b),
                      min(len(ids), len(stored)))
            raise ReplayMismatch(
                f"run {self.run_name!r} generation {gen.index}: replay asked other genomes than "
                f"the stored ones ({len(ids)} asked, {len(stored)} stored, first difference at "
                f"position {at}); the code or the operators changed since the run started"
            )

    # ---- one generation ---------------------------------------------------------------------

    def generation(self, index: int) -> list[Evaluation]:
        pop, ids = self._ask()
        gen = self._persist_asked(index, pop.get("X"), ids)
        self._phase(gen, "asked")
        unique = list(dict.fromkeys(ids))
        steps = self.steps
        self._check_stop()
        steps.prescreen(unique)
        self._phase(gen, "prescreened")
        if self.config.uses_devices():
            self._check_stop()
            self.exported += steps.export(unique)
            self._phase(gen, "exported")
            self._check_stop()
            self.enqueued += steps.enqueue(unique, JobStage.SCREEN)
            self._phase(gen, "enqueued")
        if self.config.uses_quality():
            self._check_stop()
            self.trained += steps.train(self._proxy_pool, unique)
            self._phase(gen, "trained")
        if self.config.uses_devices():
            steps.wait(unique, JobStage.SCREEN)
            self._phase(gen, "measured")
            if self.config.staging is not None:
                self._check_stop()
                chosen = self._choose_confirm(gen, unique)
                self.enqueued += steps.enqueue(chosen, JobStage.CONFIRM)
                self._phase(gen, "confirm_enqueued")
                steps.wait(chosen, JobStage.CONFIRM)
                self._phase(gen, "confirmed")
        self._check_stop()
        evaluations = self.evaluate(gen, ids)
        F = [e.F for e in evaluations]
        G = [e.G for e in evaluations]
        with self.db.session_scope() as s:
            store.update_generation(
                s, generation_id=gen.id, F=F, G=G, told=True, phase="told",
                objectives=[k.name for k in self.objectives],
                constraints=[b.text() for b in self.budgets] + ["evaluated"],
                reasons={e.genome_id: e.reason for e in evaluations if not e.feasible},
            )
        self._tell(pop, F, G)
        n_ok = sum(e.feasible for e in evaluations)
        log.info("run %s generation %d: told (%d/%d feasible)", self.run_name, index, n_ok,
                 len(evaluations))
        if self.on_phase is not None:
            self.on_phase(index, "told")
        return evaluations

    def _persist_asked(self, index: int, X: np.ndarray, ids: list[str]) -> GenerationSnapshot:
        with self.db.session_scope() as s:
            gen = store.get_generation(s, run_id=self.run_id, index=index)
            if gen is not None and gen.state.get("genome_ids") is not None:
                self._check_ids(gen, ids)  # a crashed generation, continued
            else:
                gen = repo.create_generation(
                    s, run_id=self.run_id, index=index,
                    state={"genome_ids": ids, "phase": "asked", "told": False},
                )
            known = store.candidates_by_hash(s, run_id=self.run_id, hashes=ids)
            for row, gid in zip(X, ids, strict=True):
                if gid in known:
                    continue
                genome = Genome(tuple(int(x) for x in row))
                spec = self.config.deploy_spec(genome)
                cand = repo.add_candidate(
                    s, run_id=self.run_id, generation_id=gen.id,
                    genome=store.genome_doc(genome.genes),
                    arch_spec={"deploy": _spec_json(spec),
                               "proxy": _spec_json(self.config.proxy_spec(genome))},
                    analytic_costs=_costs(spec, self.config),
                )
                if cand.genome_hash != gid:
                    raise SearchError(f"genome hash {cand.genome_hash} != genome id {gid}")
                known[gid] = cand
            return gen

    def baseline_ids(self) -> list[str]:
        with self.db.session_scope(readonly=True) as s:
            return list(store.baselines_of(s, run_id=self.run_id))

    def baselines(self) -> None:
        """Pre-screen, export, enqueue at every context and train the run's baselines (what
        is already stored is skipped); their measurements are waited for at the end."""
        ids = self.baseline_ids()
        if not ids:
            return
        steps = self.steps
        steps.prescreen(ids)
        if self.config.uses_devices():
            self._check_stop()
            steps.export(ids)
            self._check_stop()
            steps.enqueue(ids, JobStage.SCREEN)
            steps.enqueue(ids, JobStage.CONFIRM)
        if self.config.uses_quality():
            self._check_stop()
            steps.train(self._proxy_pool, ids)

    def _choose_confirm(self, gen: GenerationSnapshot, ids: list[str]) -> list[str]:
        """This generation's candidates to measure at the confirm contexts (stored in the
        generation's state before any job is made, so a resumed engine confirms the same)."""
        from star.search.rundata import evaluate_run, load_run
        from star.search.stages import choose_confirm

        with self.db.session_scope(readonly=True) as s:
            fresh = store.get_generation(s, run_id=self.run_id, index=gen.index) or gen
            if "confirm" in fresh.state:
                return list(fresh.state["confirm"])
            data = load_run(s, self.run_id)
        staging = self.config.staging
        assert staging is not None
        evaluations = evaluate_run(data)
        points = {gid: e.F for gid, e in evaluations.items()
                  if not data.candidates[gid].is_baseline and not e.reason}
        confirmed = [gid for gid, c in data.candidates.items() if data.confirmation_asked(c)]
        chosen = choose_confirm(ids, points, confirmed=confirmed, rank=staging.confirm_rank,
                                cap=staging.confirm_max)
        with self.db.session_scope() as s:
            store.update_generation(s, generation_id=gen.id, confirm=chosen)
        log.info("run %s generation %d: confirming %d of %d at %s tokens", self.run_name,
                 gen.index, len(chosen), len(ids), self.config.confirm_contexts())
        return chosen

    def _proxy_pool(self) -> Any:
        if self._pool is None:
            if self._pool_factory is not None:
                self._pool = self._pool_factory(self.config.proxy)
            else:
                from star.proxy.pool import ProxyPool

                self._pool = ProxyPool(self.config.proxy)
        return self._pool

    def evaluate(self, gen: GenerationSnapshot, ids: list[str]) -> list[Evaluation]:
        """F/G rows of ``ids`` (asked order) from the stored rows."""
        from star.search.rundata import evaluate_run, load_run

        with self.db.session_scope(readonly=True) as s:
            data = load_run(s, self.run_id)
        unique = list(dict.fromkeys(ids))
        got = evaluate_run(data, objectives=self.objectives, budgets=self.budgets, only=unique)
        return [got[gid] for gid in ids]


def _spec_json(spec: Any) -> dict[str, Any]:
    import json
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(spec)))


def _costs(spec: Any, config: SearchConfig) -> dict[str, Any]:
    import json

    from star.cost import analyze

    report = analyze(spec, contexts=tuple(sorted(config.contexts)))
    return json.loads(json.dumps(report.to_dict()))

"""A run's stored rows in one frozen bundle, and their evaluation (F, G, estimates, notes).

The engine (tell), ``star frontier``, the REST API and the report all judge candidates the same
way from the same rows: this module is that one way. ``load_run`` reads everything a judgement
needs in one read-only transaction; ``evaluate_run`` turns it into ``Evaluation`` s, with staged
long-context estimates (``star.search.stages``) for candidates that were not confirmed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from star.db.models import JobStage
from star.db.snapshots import CandidateSnapshot, GenerationSnapshot, JobSnapshot, RunSnapshot
from star.genome import ArchSpec, Genome
from star.search.config import SearchConfig
from star.search.evaluate import Evaluation, device_measurements, evaluate
from star.search.objectives import (
    MEASURED,
    Bound,
    DeviceMeasurement,
    MetricKey,
    measured_value,
)
from star.search.stages import Calibration, raw_estimate
from star.search.store import MeasuredRow


class NotASearchRun(ValueError):
    """The run was not created by the search (no stored ``SearchConfig``)."""


@dataclass(frozen=True)
class RunData:
    run: RunSnapshot
    config: SearchConfig
    candidates: dict[str, CandidateSnapshot]  # genome id -> row (asked ones and baselines)
    generations: list[GenerationSnapshot]
    jobs: dict[int, list[JobSnapshot]]  # candidate id -> its jobs
    measurements: dict[int, list[MeasuredRow]]  # candidate id -> its measurements
    # candidate id -> its measurements by the run's cross_runtime (not objectives)
    cross: dict[int, list[MeasuredRow]] = field(default_factory=dict)
    _specs: dict[str, ArchSpec] = field(default_factory=dict, compare=False, repr=False)

    @property
    def generation_index(self) -> dict[int, int]:
        """Generation row id -> index."""
        return {g.id: g.index for g in self.generations}

    def generation_of(self, cand: CandidateSnapshot) -> int | None:
        return self.generation_index.get(cand.generation_id) if cand.generation_id else None

    @property
    def baselines(self) -> list[CandidateSnapshot]:
        return [c for c in self.candidates.values() if c.is_baseline]

    def spec(self, genome_id: str) -> ArchSpec:
        """The deployment-scale spec (what was exported and measured)."""
        if genome_id not in self._specs:
            genes = tuple(self.candidates[genome_id].genome["genes"])
            self._specs[genome_id] = self.config.deploy_spec(Genome(genes))
        return self._specs[genome_id]

    def rows(self, cand: CandidateSnapshot, *, device_id: int | None = None
             ) -> list[DeviceMeasurement]:
        return device_measurements(self.measurements.get(cand.id, []), device_id=device_id)

    def confirmation_asked(self, cand: CandidateSnapshot) -> bool:
        """A confirm-stage job exists for it (chosen, or a baseline): its long-context figures
        are measured, never estimated."""
        return any(j.stage == JobStage.CONFIRM.value for j in self.jobs.get(cand.id, ()))

    def deadline_cancelled(self) -> set[int]:
        """Job ids the search cancelled at a deadline, as runs before 0003 recorded them."""
        return {j for g in self.generations for j in g.state.get("deadline_cancelled", ())}


def load_run(session: Any, ref: str | int) -> RunData:
    """Everything a judgement of the run needs, in the caller's (read-only) transaction."""
    from star.db import repo
    from star.search import store

    run = store.resolve_run(session, ref)
    doc = run.config or {}
    if "search" not in doc:
        raise NotASearchRun(f"run {run.name!r} was not created by `star search run`")
    config = SearchConfig.model_validate(doc["search"], context={"stored": True})
    cands = store.candidates_by_hash(session, run_id=run.id)
    ids = [c.id for c in cands.values()]
    own: dict[int, list[MeasuredRow]] = {}
    cross: dict[int, list[MeasuredRow]] = {}
    for cid, rows in store.measurements_of_candidates(session, ids).items():
        own[cid] = [r for r in rows if runtime_of(r) == config.runtime]
        cross[cid] = [r for r in rows if runtime_of(r) != config.runtime]
    return RunData(
        run=run, config=config, candidates=cands,
        generations=repo.list_generations(session, run.id),
        jobs=store.jobs_of_candidates(session, ids), measurements=own, cross=cross,
    )


def runtime_of(row: MeasuredRow) -> str:
    """Who measured a row (rows stored before runtimes existed: llama.cpp)."""
    return str((row.measurement.runtime or {}).get("runtime") or "llama.cpp")


def _confirm_keys(keys: Iterable[MetricKey], config: SearchConfig) -> list[MetricKey]:
    confirm = set(config.confirm_contexts())
    return [k for k in dict.fromkeys(keys) if k.metric in MEASURED and k.context in confirm]


def calibrate(data: RunData, keys: Sequence[MetricKey], *,
              device_id: int | None = None) -> Calibration:
    """Fit the staged estimates on every candidate measured at the confirm contexts."""
    config = data.config
    pairs = []
    long_keys = _confirm_keys(keys, config)
    if not long_keys:
        return Calibration({}, {}, {})
    for gid, cand in data.candidates.items():
        if not data.confirmation_asked(cand):
            continue
        rows = data.rows(cand, device_id=device_id)
        for key in long_keys:
            got = measured_value(key, rows).value
            if got is None:
                continue
            est = raw_estimate(key, data.spec(gid), config.cost_quant, rows,
                               config.screen_contexts()).value
            if est is not None:
                pairs.append((key, est, got))
    return Calibration.fit(pairs)


def evaluate_run(data: RunData, *, objectives: Sequence[MetricKey] | None = None,
                 budgets: Sequence[Bound] | None = None,
                 device_id: int | None = None,
                 only: Iterable[str] | None = None) -> dict[str, Evaluation]:
    """Evaluations by genome id (of ``only``, else every candidate and baseline), with staged
    estimates for long-context metrics of candidates not asked to confirm."""
    config = data.config
    objectives = list(objectives if objectives is not None else config.objective_keys())
    budgets = list(budgets if budgets is not None else config.bounds())
    keys = [*objectives, *(b.key for b in budgets)]
    long_keys = _confirm_keys(keys, config)
    calibration = calibrate(data, keys, device_id=device_id)
    cancelled = data.deadline_cancelled()
    out: dict[str, Evaluation] = {}
    for gid in (list(only) if only is not None else list(data.candidates)):
        cand = data.candidates.get(gid)
        rows = data.rows(cand, device_id=device_id) if cand is not None else []
        estimates = None
        if cand is not None and long_keys and not data.confirmation_asked(cand):
            spec = data.spec(gid)
            screen = config.screen_contexts()
            estimates = {k.name: calibration.apply(k, raw_estimate(k, spec, config.cost_quant, rows,
                                                                    screen))
                         for k in long_keys}
        out[gid] = evaluate(
            gid, cand, objectives=objectives, budgets=budgets, measurements=rows,
            jobs=data.jobs.get(cand.id, []) if cand is not None else [],
            deadline_cancelled=cancelled, estimates=estimates,
        )
    return out

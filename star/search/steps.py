"""The phases of one generation between ``ask`` and ``tell`` (see ``star.search.engine``).

Each step reads what is already stored, does only what is missing, and stores each result as it
comes (one transaction per candidate or chunk), so that a step interrupted anywhere is continued
by running it again: nothing is exported, enqueued or trained twice.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from star.db import Database, repo
from star.db.device_class import DeviceClass
from star.db.errors import ConflictError
from star.db.models import JobStage
from star.db.snapshots import CandidateSnapshot
from star.db.store import ArtifactStore
from star.genome import Genome
from star.search import store
from star.search.config import SearchConfig
from star.search.objectives import ANALYTIC, Bound, value
from star.search.prescreen import check_memory, check_runtime, rss_lower_bound

log = logging.getLogger("star.search.engine")

# Why the search cancelled a job (kept as the job's last error, shown in reasons and reports).
DEADLINE_REASON = "cancelled at the generation deadline"


class Stopped(Exception):
    """Leave at this phase boundary: a stop was requested (``star search stop``), the process
    is shutting down, or another engine took the run over. ``str()`` is the reason."""


@dataclass
class Steps:
    """What every step needs; ``check_stop`` raises ``Stopped`` when a stop was requested."""

    db: Database
    artifacts: ArtifactStore
    run_id: int
    run_name: str
    seed: int
    config: SearchConfig
    budgets: list[Bound]
    check_stop: Callable[[], None]
    sleep: Callable[[float], None] = time.sleep

    def candidates(self, ids: list[str]) -> dict[str, CandidateSnapshot]:
        with self.db.session_scope(readonly=True) as s:
            return store.candidates_by_hash(s, run_id=self.run_id, hashes=ids)

    # ---- pre-screen -------------------------------------------------------------------------

    def prescreen(self, ids: list[str]) -> None:
        """Store ``analytic_costs["prescreen"]`` for every candidate that has none."""
        with self.db.session_scope() as s:
            cands = store.candidates_by_hash(s, run_id=self.run_id, hashes=ids)
            for gid in ids:
                c = cands[gid]
                costs = dict(c.analytic_costs or {})
                if "prescreen" in costs:
                    continue
                costs["prescreen"] = self.screen(Genome(tuple(c.genome["genes"])), costs)
                repo.update_candidate(s, candidate_id=c.id, analytic_costs=costs)

    def screen(self, genome: Genome, costs: dict[str, Any]) -> dict[str, Any]:
        """Runtime check and the budgets decidable without a device: analytic metrics exactly,
        peak RSS by its lower bound (weights + KV + state). ``bounds``: the lower bounds that
        already break a budget (used as the budget's value in G)."""
        cfg = self.config
        spec = cfg.deploy_spec(genome)
        reasons: list[str] = []
        bounds: dict[str, float] = {}
        arch = None
        if cfg.runtime == "executorch":  # any genome; only the static program's shape is checked
            problem = pte_problem(spec, cfg)
            if problem is not None:
                reasons.append(f"runtime: {problem}")
        else:
            verdict = check_runtime(spec, tuple(cfg.allowed_archs) if cfg.allowed_archs else None)
            if verdict.ok:
                from star.export import check_exportable

                arch = check_exportable(spec).name
            else:
                reasons.append(f"runtime: {verdict.reason}")
        for bound in self.budgets:
            key, limit = bound.key, bound.limit
            if key.metric == "peak_rss_mb" and key.context is not None and not bound.lower:
                mem = check_memory(spec, context=key.context, budget_bytes=limit * 2**20,
                                   quant=cfg.cost_quant)
                if not mem.ok:
                    reasons.append(f"{key.name}: {mem.reason}")
                    bounds[key.name] = rss_lower_bound(spec, key.context, cfg.cost_quant) / 2**20
            elif key.metric in ANALYTIC:
                v, _ = value(key, analytic=costs, proxy=None, measurements=())
                if v is not None and bound.violation(v) > 0:
                    reasons.append(bound.broken(v))
        return {"ok": not reasons, "reason": "; ".join(reasons) or None, "arch": arch,
                "bounds": bounds}

    def feasible_ids(self, ids: list[str]) -> list[str]:
        """Those that passed the pre-screen and did not fail to export."""
        cands = self.candidates(ids)
        out = []
        for gid in ids:
            c = cands[gid]
            pre = (c.analytic_costs or {}).get("prescreen") or {}
            if pre.get("ok") and not c.export_error:
                out.append(gid)
        return out

    # ---- devices ----------------------------------------------------------------------------

    def export(self, ids: list[str]) -> int:
        """Deployment-scale GGUF (runtime executorch: a .pte) with random weights of
        ``export_seed`` into the artifact store, linked to its candidate; an export that fails
        is kept as the candidate's ``export_error``. Returns how many were exported."""
        from star.export import ExportError

        cfg = self.config
        cands = self.candidates(ids)
        todo = self._missing(cands, self.feasible_ids(ids), cfg.artifact_quant,
                             cfg.artifact_format)
        for gid in todo:
            self.check_stop()
            try:
                self._export_file(cands[gid], gid, cfg.artifact_format)
            except (ExportError, MemoryError, RuntimeError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("candidate %s: export failed: %s", gid[:12], reason)
                with self.db.session_scope() as s:
                    repo.update_candidate(s, candidate_id=cands[gid].id, export_error=reason)
        if cfg.cross_runtime == "executorch":
            self.export_cross(ids)
        return len(todo)

    def export_cross(self, ids: list[str]) -> int:
        """``cross_runtime: executorch``: each exported candidate also as a .pte (not an
        objective, so a failure is kept in ``analytic_costs["cross_runtime_error"]`` and the
        candidate stays in the search). Returns how many were exported."""
        from star.export import ExportError

        cands = self.candidates(ids)
        todo = [g for g in self._missing(cands, self.feasible_ids(ids), self.config.pte_quant,
                                         "pte")
                if "cross_runtime_error" not in (cands[g].analytic_costs or {})]
        for gid in todo:
            self.check_stop()
            cand = cands[gid]
            try:
                self._export_file(cand, gid, "pte")
            except (ExportError, MemoryError, RuntimeError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("candidate %s: .pte export failed: %s", gid[:12], reason)
                with self.db.session_scope() as s:
                    costs = {**(cand.analytic_costs or {}), "cross_runtime_error": reason}
                    repo.update_candidate(s, candidate_id=cand.id, analytic_costs=costs)
        return len(todo)

    def _missing(self, cands: dict[str, CandidateSnapshot], gids: list[str], quant: str,
                 fmt: str) -> list[str]:
        """Those of ``gids`` without a stored file of this format and quantization."""
        with self.db.session_scope(readonly=True) as s:
            have = store.artifacts_of_candidates(s, [cands[g].id for g in gids], quant=quant,
                                                 fmt=fmt)
        return [g for g in gids if cands[g].id not in have]

    def _export_file(self, cand: CandidateSnapshot, gid: str, fmt: str) -> None:
        """One candidate's deployment file (``fmt`` gguf or pte) into the artifact store, linked
        to it. Raises ``ExportError`` (``UnsupportedGenome`` included) when it cannot be made."""
        import torch

        from star.export import ExportError, export_gguf
        from star.nn import StarModel

        cfg = self.config
        spec = cfg.deploy_spec(Genome(tuple(cand.genome["genes"])))
        quant = cfg.pte_quant if fmt == "pte" else cfg.quant.value
        if fmt == "pte" and (problem := pte_problem(spec, cfg)) is not None:
            raise ExportError(problem)
        model = StarModel(spec, device="cpu", dtype=torch.float32, seed=cfg.export_seed)
        with tempfile.TemporaryDirectory(prefix="star-export-") as tmp:
            if fmt == "pte":
                path = export_program(spec, model, Path(tmp), gid, cfg)
            else:
                path = export_gguf(spec, model, Path(tmp) / f"{gid[:16]}.gguf", quant=quant,
                                   name=gid[:12]).path
            del model
            with self.db.session_scope() as s:
                repo.import_artifact(s, self.artifacts, path, quant=quant, format=fmt,
                                     candidate_id=cand.id)

    def settings_for(self, cand: CandidateSnapshot) -> list[bool]:
        """The flash-attention settings to measure: the configured ones, or the first alone for
        a genome without attention (the setting changes nothing in it)."""
        settings = list(self.config.flash_attn)  # [False] under runtime executorch
        mix = (cand.analytic_costs or {}).get("layer_mix") or {}
        if not any(mix.get(k) for k in ("attention", "swa")):
            return settings[:1]
        return settings

    def enqueue(self, ids: list[str], stage: JobStage) -> int:
        """One profile job per candidate x device class x flash-attention setting for
        ``stage`` (its contexts and repetitions). Each job is its own transaction with a unique
        ``dedupe_key``: a job is never enqueued twice, even by two engines. Returns jobs
        created."""
        cfg = self.config
        if stage is JobStage.SCREEN:
            contexts, reps = cfg.screen_contexts(), cfg.repetitions
        else:
            contexts = cfg.confirm_contexts()
            reps = (cfg.staging.confirm_repetitions if cfg.staging else None) or cfg.repetitions
        if not contexts:
            return 0
        cands = self.candidates(ids)
        feasible = self.feasible_ids(ids)
        with self.db.session_scope(readonly=True) as s:
            cids = [cands[g].id for g in feasible]
            arts = store.artifacts_of_candidates(s, cids, quant=cfg.artifact_quant,
                                                 fmt=cfg.artifact_format)
            cross_arts = (store.artifacts_of_candidates(s, cids, quant=cfg.pte_quant, fmt="pte")
                          if cfg.cross_runtime == "executorch" else {})
            existing = store.jobs_of_candidates(s, cids)
        created = 0
        for gid in feasible:
            cand = cands[gid]
            art = arts.get(cand.id)
            if art is None:
                continue
            runs = [(cfg.runtime, art, fa) for fa in self.settings_for(cand)]
            cross = cross_arts.get(cand.id)
            if cross is not None and stage is JobStage.SCREEN:  # no flash-attention switch
                runs.append(("executorch", cross, False))
            for device_class in cfg.measured_classes():
                cls = DeviceClass.parse(device_class)
                for runtime, artifact, fa in runs:
                    if any(store.job_matches(j, device_class, stage, fa, runtime)
                           for j in existing.get(cand.id, ())):
                        continue
                    key = store.job_key(cand.id, device_class, stage, fa, runtime)
                    try:
                        with self.db.session_scope() as s:
                            if store.job_exists(s, key):
                                continue
                            repo.create_profile_job(
                                s, artifact_id=artifact.id, contexts=contexts, repetitions=reps,
                                device_kind=cls.kind, device_tags=cls.tags,
                                candidate_id=cand.id,
                                n_gen=cfg.n_gen, max_attempts=cfg.max_attempts,
                                stage=stage.value, flash_attn=fa, dedupe_key=key,
                            )
                    except IntegrityError:  # another engine created it between check and insert
                        continue
                    created += 1
        return created

    def job_ids(self, ids: list[str], stage: JobStage | None = None) -> list[int]:
        """The search's profile jobs of these candidates (of one stage, or every stage)."""
        cands = self.candidates(ids)
        with self.db.session_scope(readonly=True) as s:
            jobs = store.jobs_of_candidates(s, [c.id for c in cands.values()])
        out = []
        for cid_jobs in jobs.values():
            for j in cid_jobs:
                if j.kind != "profile":
                    continue
                if stage is not None and (j.stage or JobStage.SCREEN.value) != stage.value:
                    continue
                out.append(j.id)
        return sorted(out)

    def wait(self, ids: list[str], stage: JobStage | None = None) -> list[int]:
        """Until every job of ``ids`` (of ``stage``) is finished (raises ``Stopped`` on a stop
        request); at the generation deadline (counted from when this call started) the
        unfinished jobs are cancelled, the reason kept as their last error. Returns the
        cancelled job ids."""
        job_ids = self.job_ids(ids, stage)
        deadline = time.monotonic() + self.config.generation_deadline_s
        while True:
            with self.db.session_scope(readonly=True) as s:
                jobs = store.jobs_by_id(s, job_ids)
            pending = [j for j in jobs.values() if not j.state.is_finished()]
            if not pending:
                return []
            self.check_stop()
            if time.monotonic() >= deadline:
                cancelled = []
                with self.db.session_scope() as s:
                    for job in pending:
                        try:
                            repo.cancel_job(s, job_id=job.id, reason=DEADLINE_REASON)
                            cancelled.append(job.id)
                        except ConflictError:  # finished meanwhile: its result counts
                            pass
                log.warning("run %s: deadline passed, cancelled jobs %s", self.run_name,
                            cancelled)
                return cancelled
            self.sleep(self.config.poll_interval_s)

    # ---- proxy training ---------------------------------------------------------------------

    def train(self, pool: Callable[[], Any], ids: list[str]) -> int:
        """Proxy-train (``ProxyPool``) every pre-screened candidate without stored proxy
        metrics, a chunk of ``pool.workers`` at a time, storing each chunk's results at once.
        ``pool`` makes the pool on first use. Returns how many were trained."""
        from star.proxy.pool import ProxyJob

        with self.db.session_scope(readonly=True) as s:
            cands = store.candidates_by_hash(s, run_id=self.run_id, hashes=ids)
        todo = [
            gid for gid in ids
            if cands[gid].proxy_metrics is None
            and ((cands[gid].analytic_costs or {}).get("prescreen") or {}).get("ok")
        ]
        if not todo:
            return 0
        proxy_pool = pool()
        step = max(1, int(getattr(proxy_pool, "workers", 1)))
        for start in range(0, len(todo), step):
            self.check_stop()
            chunk = todo[start:start + step]
            jobs = [
                ProxyJob(self.config.proxy_spec(Genome(tuple(cands[gid].genome["genes"]))),
                         seed=self.seed, name=gid[:12])
                for gid in chunk
            ]
            results = proxy_pool.run(jobs)
            with self.db.session_scope() as s:
                for gid, result in zip(chunk, results, strict=True):
                    metrics = result.model_dump(mode="json")
                    metrics["quality"] = result.quality_loss  # what objectives.value reads
                    repo.update_candidate(s, candidate_id=cands[gid].id, proxy_metrics=metrics)
        return len(todo)


def pte_problem(spec: Any, config: SearchConfig) -> str | None:
    """Why this deployment spec cannot become the search's .pte (None: it can)."""
    from star.export.errors import ExportValidationError
    from star.export.executorch.options import PteOptions

    try:
        PteOptions.for_spec(spec, quant=config.pte_quant, max_context=config.pte_max_context())
    except ExportValidationError as exc:
        return str(exc)
    return None


def export_program(spec: Any, model: Any, folder: Path, gid: str, config: SearchConfig) -> Path:
    """A candidate's .pte (prefill + decode, XNNPACK, read back against torch) in ``folder``."""
    from star.export.executorch import export_pte
    from star.export.executorch.options import PteOptions

    options = PteOptions.for_spec(spec, quant=config.pte_quant,
                                  max_context=config.pte_max_context())
    return export_pte(model, folder / f"{gid[:16]}.pte", options, in_place=True).path

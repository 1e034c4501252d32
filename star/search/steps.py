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

from star.db import Database, repo
from star.db.errors import ConflictError
from star.db.snapshots import GenerationSnapshot
from star.db.store import ArtifactStore
from star.genome import Genome
from star.search import store
from star.search.config import SearchConfig
from star.search.objectives import ANALYTIC, MetricKey, value
from star.search.prescreen import check_memory, check_runtime, rss_lower_bound

log = logging.getLogger("star.search.engine")


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
    budgets: list[tuple[MetricKey, float]]
    check_stop: Callable[[], None]
    sleep: Callable[[float], None] = time.sleep

    def entries(self, gen: GenerationSnapshot) -> dict[str, dict[str, Any]]:
        with self.db.session_scope(readonly=True) as s:
            fresh = store.get_generation(s, run_id=self.run_id, index=gen.index) or gen
        return dict(fresh.state.get("candidates", {}))

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
        verdict = check_runtime(spec, tuple(cfg.allowed_archs) if cfg.allowed_archs else None)
        arch = None
        if verdict.ok:
            from star.export import check_exportable

            arch = check_exportable(spec).name
        else:
            reasons.append(f"runtime: {verdict.reason}")
        for key, limit in self.budgets:
            if key.metric == "peak_rss_mb" and key.context is not None:
                mem = check_memory(spec, context=key.context, budget_bytes=limit * 2**20,
                                   quant=cfg.quant)
                if not mem.ok:
                    reasons.append(f"{key.name}: {mem.reason}")
                    bounds[key.name] = rss_lower_bound(spec, key.context, cfg.quant) / 2**20
            elif key.metric in ANALYTIC:
                v, _ = value(key, analytic=costs, proxy=None, measurements=())
                if v is not None and v > limit:
                    reasons.append(f"{key.name} = {v:g} > budget {limit:g}")
        return {"ok": not reasons, "reason": "; ".join(reasons) or None, "arch": arch,
                "bounds": bounds}

    def feasible_ids(self, gen: GenerationSnapshot, ids: list[str]) -> list[str]:
        """Those that passed the pre-screen and did not fail to export."""
        with self.db.session_scope(readonly=True) as s:
            cands = store.candidates_by_hash(s, run_id=self.run_id, hashes=ids)
        entries = self.entries(gen)
        out = []
        for gid in ids:
            pre = (cands[gid].analytic_costs or {}).get("prescreen") or {}
            if pre.get("ok") and not entries.get(gid, {}).get("export_error"):
                out.append(gid)
        return out

    # ---- devices ----------------------------------------------------------------------------

    def export(self, gen: GenerationSnapshot, ids: list[str]) -> int:
        """Deployment-scale GGUF (random weights of ``export_seed``) into the artifact store,
        its artifact id in the generation entry; returns how many were exported."""
        from star.export import ExportError, UnsupportedGenome, export_gguf

        entries = self.entries(gen)
        with self.db.session_scope(readonly=True) as s:
            cands = store.candidates_by_hash(s, run_id=self.run_id, hashes=ids)
        todo = [g for g in self.feasible_ids(gen, ids) if not entries.get(g, {}).get("artifact_id")]
        quant = self.config.quant.value
        for gid in todo:
            self.check_stop()
            cand = cands[gid]
            spec = self.config.deploy_spec(Genome(tuple(cand.genome["genes"])))
            try:
                import torch

                from star.nn import StarModel

                model = StarModel(spec, device="cpu", dtype=torch.float32,
                                  seed=self.config.export_seed)
                with tempfile.TemporaryDirectory(prefix="star-export-") as tmp:
                    result = export_gguf(spec, model, Path(tmp) / f"{gid[:16]}.gguf",
                                         quant=quant, name=gid[:12])
                    del model
                    with self.db.session_scope() as s:
                        art = repo.import_artifact(s, self.artifacts, result.path, quant=quant,
                                                   candidate_id=cand.id)
                        store.update_entry(s, generation_id=gen.id, genome_id=gid,
                                           artifact_id=art.id, arch=result.arch,
                                           sha256=art.sha256)
            except (UnsupportedGenome, ExportError, MemoryError, RuntimeError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("candidate %s: export failed: %s", gid[:12], reason)
                with self.db.session_scope() as s:
                    store.update_entry(s, generation_id=gen.id, genome_id=gid,
                                       export_error=reason[:2000])
        return len(todo)

    def enqueue(self, gen: GenerationSnapshot, ids: list[str]) -> int:
        """One profile job per candidate and device class. The job and its record in the
        generation entry are one transaction, and the entry is re-read under the row lock
        first: a job is never enqueued twice, even by two engines. Returns jobs created."""
        cfg = self.config
        created = 0
        for gid in self.feasible_ids(gen, ids):
            for device_class in cfg.measured_classes():
                kind, *tags = device_class.split(":")
                with self.db.session_scope() as s:
                    entry = store.entry_of(s, generation_id=gen.id, genome_id=gid)  # locked
                    jobs = dict(entry.get("jobs", {}))
                    if device_class in jobs or not entry.get("artifact_id"):
                        continue
                    job = repo.create_profile_job(
                        s, artifact_id=entry["artifact_id"], contexts=cfg.contexts,
                        repetitions=cfg.repetitions, device_kind=kind, device_tags=tags,
                        candidate_id=entry["candidate_id"], n_gen=cfg.n_gen,
                        max_attempts=cfg.max_attempts,
                    )
                    jobs[device_class] = job.id
                    store.update_entry(s, generation_id=gen.id, genome_id=gid, jobs=jobs)
                created += 1
        return created

    def wait(self, gen: GenerationSnapshot, ids: list[str]) -> None:
        """Until every job of ``ids`` is finished (raises ``Stopped`` on a stop request); at
        the generation deadline (counted from when this call started) the unfinished jobs are
        cancelled and recorded in ``deadline_cancelled``."""
        entries = self.entries(gen)
        job_ids = sorted({j for gid in ids for j in entries.get(gid, {}).get("jobs", {}).values()})
        deadline = time.monotonic() + self.config.generation_deadline_s
        while True:
            with self.db.session_scope(readonly=True) as s:
                jobs = store.jobs_by_id(s, job_ids)
            pending = [j for j in jobs.values() if not j.state.is_finished()]
            if not pending:
                return
            self.check_stop()
            if time.monotonic() >= deadline:
                cancelled = []
                with self.db.session_scope() as s:
                    for job in pending:
                        try:
                            repo.cancel_job(s, job_id=job.id)
                            cancelled.append(job.id)
                        except ConflictError:  # finished meanwhile: its result counts
                            pass
                    store.update_generation(s, generation_id=gen.id,
                                            deadline_cancelled=cancelled)
                log.warning("run %s generation %d: deadline passed, cancelled jobs %s",
                            self.run_name, gen.index, cancelled)
                return
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

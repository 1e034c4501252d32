"""``cross_runtime: executorch``: a llama.cpp run also exports every candidate to a .pte and
measures it with ExecuTorch at the screening contexts. The objectives read llama.cpp's rows only;
the report pairs the two runtimes' figures per candidate (ratio, rank agreement).

The coordinator's repository functions play the agent (the .pte files are real exports; the
figures are made up, so the assertions can be exact): ExecuTorch reports TTFT 2x llama.cpp's and
the same ordering."""

from __future__ import annotations

from typing import Any

import pytest

from star.db import Database, repo
from star.db.store import ArtifactStore
from star.report.build import build_report
from star.report.html import render_body
from star.search.engine import SearchEngine
from star.search.rundata import load_run
from star.search.store import RunStatus
from tests.factories import make_report
from tests.search.conftest import search_config

pytestmark = pytest.mark.slow


def test_cross_runtime_measures_both_and_the_report_compares_them(
        db: Database, artifacts: ArtifactStore) -> None:
    with db.session_scope() as s:
        device, _ = repo.create_device(s, name="lap", kind="x86")
        device = repo.update_properties(s, device_id=device.id, properties={
            "kind": "x86", "runtimes": ["llama.cpp", "executorch"]})
    leased: list[str] = []

    def agent(index: int, phase: str) -> None:
        if phase != "enqueued":
            return
        while True:
            with db.session_scope() as s:
                lease = repo.lease_job(s, device=device, lease_seconds=60)
            if lease is None:
                return
            leased.append(lease.job.runtime)
            report = make_report(lease.artifact.sha256, lease.job.contexts, repetitions=1)
            # a figure per candidate that orders the candidates alike in both runtimes
            size = 10.0 * (lease.job.candidate_id or 0)
            contexts = [c.model_copy(update={"ttft_ms": c.ttft_ms.model_copy(update={  # type: ignore[union-attr]
                "median": size * (2 if lease.job.runtime == "executorch" else 1)})})
                for c in report.contexts]
            runtime = report.runtime
            if lease.job.runtime == "executorch":
                assert lease.artifact.format == "pte"
                runtime = runtime.model_copy(update={
                    "runtime": "executorch", "llama_cpp_commit": "", "delegate": "xnnpack",
                    "runtime_version": "1.5.1"})
            report = report.model_copy(update={"contexts": contexts, "runtime": runtime})
            with db.session_scope() as s:
                repo.submit_result(s, job_id=lease.job.id, device_id=device.id,
                                   lease_token=lease.lease_token,
                                   idempotency_key=f"k{lease.job.id}", report=report)

    cfg = search_config(name="cross", generations=1, population=3, cross_runtime="executorch",
                        pte_quant="fp32", objectives=["ttft_ms@64/x86", "params"],
                        budgets=[])
    engine = SearchEngine.create(db, artifacts, cfg, on_phase=agent)
    assert engine.run() is RunStatus.DONE
    assert leased.count("executorch") == leased.count("llama.cpp") == 3

    with db.session_scope(readonly=True) as s:
        data = load_run(s, "cross")
        state: dict[str, Any] = repo.list_generations(s, data.run.id)[0].state
    for gid, F in zip(state["genome_ids"], state["F"], strict=True):
        gguf = [r for r in data.measurements[data.candidates[gid].id] if r.measurement.context
                == 64]
        assert F[0] == gguf[0].measurement.ttft_median_ms  # llama.cpp's figure, not ExecuTorch's
    report = build_report(data)
    agreement = report.runtime_agreement
    assert agreement is not None and (agreement.primary, agreement.other) == ("llama.cpp",
                                                                              "executorch")
    assert len(agreement.pairs) == 3 * len(cfg.contexts)
    assert agreement.median_ratio["ttft"] == pytest.approx(2.0)
    assert agreement.median_ratio["decode"] == pytest.approx(1.0)
    assert agreement.spearman["ttft"] == pytest.approx(1.0)
    html = render_body(report)
    assert 'id="runtimes"' in html and "executorch 1.5.1 (xnnpack)" in html

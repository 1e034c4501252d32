"""A run as a study: baselines (measured and trained, never bred), flash attention measured both
ways (each objective at the better setting), staged contexts (every candidate screened short,
only the chosen and the baselines confirmed long) and config errors for seeds and baselines no
allowed runtime runs.

The device is simulated at its edge, through the coordinator's own repository functions (lease,
submit): a "device" whose figures follow a simple physical model of each genome (compute per
prompt token, bytes per decoded token, KV cache, and with flash attention off the
attention-score buffer) that the search's estimator does not share (other constants, an extra
per-layer cost).
"""

from __future__ import annotations

from typing import Any

import pytest

from device_agents.schemas import BenchReport, ContextMeasurement, RuntimeSettings, Stat
from star.cost import kv_bytes, prefill_flops, weight_bytes
from star.db import Database, JobState, repo
from star.db.store import ArtifactStore
from star.genome import Genome
from star.search.config import SearchConfigError
from star.search.engine import SearchEngine
from star.search.frontier import run_frontier
from star.search.store import RunStatus
from tests.search.conftest import search_config

LLAMA = "genomes/llama-3.2-1b.yaml"
MAMBA = "genomes/mamba2-370m.yaml"
STUDY = {
    "objectives": ["ttft_ms@128/x86", "decode_ms@128/x86", "peak_rss_mb@128/x86", "params"],
    "generations": 2, "baselines": [LLAMA], "flash_attn": [False, True],
    "allowed_archs": ["lfm2", "llama", "qwen3"],
}


def figures(spec: Any, quant: str, context: int, flash_attn: bool) -> dict[str, float]:
    """The simulated device: what it measures for one genome at one context and setting."""
    from star.cost import Quant

    heads = max((getattr(layer.mixer, "n_heads", 0) for layer in spec.layers), default=0)
    attn = sum(1 for layer in spec.layers if getattr(layer.mixer, "n_heads", 0))
    ttft = prefill_flops(spec, context) / 3e7 + 0.2 * spec.n_layers
    decode = (weight_bytes(spec, Quant(quant)) + kv_bytes(spec, context)) / 4e6 + 0.05
    rss = 30e6 + weight_bytes(spec, Quant(quant)) + kv_bytes(spec, context)
    if flash_attn:  # llama.cpp on CPU: faster prefill, slower decode, no score buffer
        ttft *= 0.8
        decode *= 1.0 + 0.3 * attn
    else:
        rss += 512 * context * heads * 4
    return {"ttft": ttft, "decode": decode, "rss": rss}


class SimulatedDevice:
    """Leases every queued job and submits what ``figures`` says; records what it ran."""

    def __init__(self, db: Database, config: Any, name: str = "lap") -> None:
        self.db = db
        self.config = config
        with db.session_scope() as s:
            self.device, _ = repo.create_device(s, name=name, kind="x86")
        self.ran: list[tuple[int, str | None, bool | None, tuple[int, ...]]] = []

    def __call__(self, index: int, phase: str) -> None:
        if phase not in ("enqueued", "confirm_enqueued"):
            return
        while True:
            with self.db.session_scope() as s:
                lease = repo.lease_job(s, device=self.device, lease_seconds=60)
                if lease is None:
                    return
                cand = repo.get_candidate(s, lease.job.candidate_id)
            spec = self.config.deploy_spec(Genome(tuple(cand.genome["genes"])))
            fa = bool(lease.job.flash_attn)
            rows = []
            for c in lease.job.contexts:
                f = figures(spec, self.config.quant.value, c, fa)
                rows.append(ContextMeasurement(
                    context=c, ttft_ms=Stat(median=f["ttft"], stddev=0.0, samples=[f["ttft"]]),
                    decode_ms_per_token=Stat(median=f["decode"], stddev=0.0,
                                             samples=[f["decode"]]),
                    peak_rss_bytes=int(f["rss"])))
            report = BenchReport(
                model_sha256=lease.artifact.sha256, model_bytes=lease.artifact.size_bytes,
                runtime=RuntimeSettings(llama_cpp_commit="abc1234", threads=1, flash_attn=fa,
                                        n_gen=4, repetitions=1),
                contexts=rows)
            with self.db.session_scope() as s:
                repo.submit_result(s, job_id=lease.job.id, device_id=self.device.id,
                                   lease_token=lease.lease_token,
                                   idempotency_key=f"key-{lease.job.id:08d}", report=report)
            self.ran.append((cand.id, lease.job.stage, lease.job.flash_attn,
                             tuple(lease.job.contexts)))


def run_study(db: Database, artifacts: ArtifactStore, **overrides: Any) -> tuple[Any, Any]:
    cfg = search_config(name="study", **{**STUDY, **overrides})
    device = SimulatedDevice(db, cfg)
    engine = SearchEngine.create(db, artifacts, cfg, on_phase=device)
    assert engine.run() is RunStatus.DONE
    return cfg, device


def test_baselines_are_measured_and_trained_but_never_bred(db: Database,
                                                           artifacts: ArtifactStore) -> None:
    cfg, device = run_study(db, artifacts)
    with db.session_scope(readonly=True) as s:
        run = repo.get_run_by_name(s, "study")
        cands = repo.list_candidates(s, run_id=run.id)
        gens = repo.list_generations(s, run.id)
        jobs = repo.list_jobs(s)
    baselines = [c for c in cands if c.is_baseline]
    assert [(b.label, b.role) for b in baselines] == [("llama-3.2-1b", "baseline")]
    base = baselines[0]
    asked = {g for gen in gens for g in gen.state["genome_ids"]}
    assert base.genome_hash not in asked  # never given to NSGA-II: never bred, never told
    assert base.generation_id is None
    assert base.proxy_metrics is None  # the study's objectives need no proxy quality here
    mine = [j for j in jobs if j.candidate_id == base.id]
    # every context (no staging: all in one stage) under both settings, all measured
    assert sorted((j.stage, j.flash_attn) for j in mine) == [("screen", False),
                                                             ("screen", True)]
    assert all(j.state is JobState.DONE and j.contexts == (64, 128) for j in mine)
    report = run_frontier(db, "study").to_json()
    assert [b["label"] for b in report["baselines"]] == ["llama-3.2-1b"]
    assert base.id not in {p["candidate_id"] for p in report["frontier"]}
    assert report["frontier"], "candidates measured under both settings make a frontier"


def test_baseline_is_proxy_trained_by_the_same_recipe(db: Database,
                                                      artifacts: ArtifactStore) -> None:
    run_study(db, artifacts, objectives=["quality", "ttft_ms@128/x86"], generations=1,
              population=2)
    with db.session_scope(readonly=True) as s:
        run = repo.get_run_by_name(s, "study")
        cands = repo.list_candidates(s, run_id=run.id)
    base = next(c for c in cands if c.is_baseline)
    others = [c for c in cands if not c.is_baseline]
    assert base.proxy_metrics is not None and base.proxy_metrics["quality"] > 0
    assert all(c.proxy_metrics is not None for c in others)
    same = ("steps", "seed")
    assert [base.proxy_metrics[k] for k in same] == [others[0].proxy_metrics[k] for k in same]
    assert base.proxy_metrics["tasks"].keys() == others[0].proxy_metrics["tasks"].keys()


def test_each_objective_takes_the_better_flash_attention_setting(
        db: Database, artifacts: ArtifactStore) -> None:
    run_study(db, artifacts, generations=1, seed_genomes=["genomes/lfm2-350m.yaml", MAMBA],
              allowed_archs=None)
    from star.search.rundata import evaluate_run, load_run

    with db.session_scope(readonly=True) as s:
        data = load_run(s, "study")
    evaluations = evaluate_run(data)
    checked = no_attention = 0
    for gid, e in evaluations.items():
        cand = data.candidates[gid]
        mix = cand.analytic_costs["layer_mix"]
        settings = sorted(bool(j.flash_attn) for j in data.jobs[cand.id])
        if not cand.analytic_costs["prescreen"]["ok"]:
            assert settings == []  # no device time for what cannot meet a budget
            continue
        if not (mix.get("attention") or mix.get("swa")):
            assert settings == [False]  # measured once: the setting changes nothing in it
            assert e.details["peak_rss_mb@128/x86"].flash_attn is False  # as measured
            no_attention += 1
            continue
        if not e.feasible:
            continue
        assert settings == [False, True]
        # the device: flash attention prefills faster and decodes slower, and saves memory
        assert e.details["ttft_ms@128/x86"].flash_attn is True
        assert e.details["decode_ms@128/x86"].flash_attn is False
        assert e.details["peak_rss_mb@128/x86"].flash_attn is True
        checked += 1
    assert checked >= 2 and no_attention >= 1


def test_staging_confirms_only_the_chosen_and_the_baselines(db: Database,
                                                           artifacts: ArtifactStore) -> None:
    cfg, device = run_study(db, artifacts, staging={"confirm": [128], "confirm_max": 2},
                            population=6)
    from star.search.rundata import evaluate_run, load_run

    with db.session_scope(readonly=True) as s:
        data = load_run(s, "study")
    base = data.baselines[0]
    screened = {cid for cid, stage, _, ctx in device.ran if stage == "screen"}
    confirmed = {cid for cid, stage, _, ctx in device.ran if stage == "confirm"}
    assert all(ctx == (64,) for _, stage, _, ctx in device.ran if stage == "screen")
    assert all(ctx == (128,) for _, stage, _, ctx in device.ran if stage == "confirm")
    asked = [c for c in data.candidates.values() if not c.is_baseline]
    assert {c.id for c in asked if c.analytic_costs["prescreen"]["ok"]} <= screened
    assert base.id in confirmed  # baselines are always confirmed
    chosen = [g for gen in data.generations for g in gen.state["confirm"]]
    assert 1 <= len(chosen) <= 2 * len(data.generations)  # confirm_max per generation
    assert confirmed - {base.id} == {data.candidates[g].id for g in chosen}
    assert len(confirmed) < len(screened)  # long contexts cost only what was chosen
    evaluations = evaluate_run(data)
    for gid, e in evaluations.items():
        cand = data.candidates[gid]
        long_keys = {"ttft_ms@128/x86", "decode_ms@128/x86", "peak_rss_mb@128/x86"}
        if cand.id in confirmed:
            assert e.estimated == ()
        elif e.feasible:
            assert set(e.estimated) == long_keys  # told to NSGA-II as estimates
    front = run_frontier(db, "study")
    assert front.front and all(data.candidates[p.genome_id].id in confirmed
                               for p in front.front)  # the frontier stands on measurements


def test_staged_estimates_are_calibrated_on_confirmed_candidates(
        db: Database, artifacts: ArtifactStore) -> None:
    run_study(db, artifacts, staging={"confirm": [128], "confirm_max": 3}, population=6)
    from star.search.objectives import parse_metric
    from star.search.rundata import calibrate, load_run

    with db.session_scope(readonly=True) as s:
        data = load_run(s, "study")
    keys = [parse_metric(n) for n in STUDY["objectives"]]
    cal = calibrate(data, keys)
    for name in ("ttft_ms", "decode_ms", "peak_rss_mb"):
        assert cal.counts[(name, "x86")] >= 2
        # the simulated device is not the estimator's model: calibration corrects the scale,
        # and what is left is small for this smooth device
        assert cal.errors[(name, "x86")] < 0.25


def test_seed_or_baseline_that_allowed_archs_exclude_is_an_error_naming_the_field() -> None:
    with pytest.raises(SearchConfigError) as err:
        search_config(baselines=[LLAMA], allowed_archs=["lfm2"])
    assert "baselines[0]:" in str(err.value) and "'llama'" in str(err.value)
    with pytest.raises(SearchConfigError) as err:
        search_config(seed_genomes=["genomes/lfm2-350m.yaml", MAMBA], allowed_archs=["lfm2"])
    assert "seed_genomes[1]:" in str(err.value) and "mamba2" in str(err.value)
    with pytest.raises(SearchConfigError, match=r"baselines\[0\].*does not exist"):
        search_config(baselines=["genomes/nope.yaml"])
    with pytest.raises(SearchConfigError, match=r"staging.confirm\[0\]: context 4096"):
        search_config(staging={"confirm": [4096]})


def test_from_candidate_writes_the_genome_with_its_provenance(
        tmp_path: Any, db: Database, artifacts: ArtifactStore) -> None:
    import yaml
    from typer.testing import CliRunner

    from star.cli.main import app
    from star.genome import load_genome

    run_study(db, artifacts, generations=1)
    cfg = tmp_path / "lab.yaml"
    cfg.write_text(yaml.safe_dump({"database_url": str(db.engine.url),
                                   "data_dir": str(tmp_path / "data")}))
    best = run_frontier(db, "study").front[0]
    out = tmp_path / "winner.yaml"
    r = CliRunner().invoke(app, ["genome", "from-candidate", "study", str(best.candidate_id),
                                 "-o", str(out), "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert load_genome(out).genome_id == best.genome_id  # the very genome, loadable as is
    assert f"candidate id {best.candidate_id}" in text and f"as {best.arch!r}" in text
    assert "TTFT ms @128 ↓ (x86):" in text and "flash attention on" in text
    r = CliRunner().invoke(app, ["genome", "from-candidate", "study", "llama-3.2-1b",
                                 "-c", str(cfg)])
    assert r.exit_code == 0 and "baseline, candidate id" in r.output
    r = CliRunner().invoke(app, ["genome", "from-candidate", "study", "deadbeef00",
                                 "-c", str(cfg)])
    assert r.exit_code == 2 and "CANDIDATE: run 'study' has no candidate 'deadbeef00'" in r.output


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Any) -> None:
    import yaml
    from typer.testing import CliRunner

    from star.cli.main import app
    from tests.conftest import ROOT
    from tests.search.conftest import DEPLOY

    db_file = tmp_path / "never.db"
    search = {
        "name": "plan", "population": 4, "generations": 3,
        "base_genome": str(ROOT / "genomes/lfm2-350m.yaml"),
        "seed_genomes": [str(ROOT / "genomes/lfm2-350m.yaml")],
        "baselines": [str(ROOT / LLAMA)], "deploy_scale": DEPLOY, "quant": "q8_0",
        "contexts": [64, 1024], "staging": {"confirm": [1024], "confirm_max": 1},
        "objectives": ["params", "decode_ms@1024/x86"],
    }
    cfg = tmp_path / "lab.yaml"
    cfg.write_text(yaml.safe_dump({"database_url": f"sqlite:///{db_file}",
                                   "data_dir": str(tmp_path / "data"), "search": search}))
    r = CliRunner().invoke(app, ["search", "run", "--dry-run", "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "config OK (nothing written)" in r.output
    assert "decode ms/token @1K ↓ (x86)" in r.output
    lines = {line.split()[0]: line.split() for line in r.output.splitlines() if line.strip()}
    assert lines["screen"][1:4] == ["x86", "64", "12"] and lines["screen"][4] == "24"
    assert lines["confirm"][1:5] == ["x86", "1K", "3", "6"]  # confirm_max x generations x 2
    assert lines["baselines"][3:5] == ["1", "4"]
    assert "every candidate at every context:" in r.output
    assert not db_file.exists() and not (tmp_path / "data").exists()  # nothing written
    search["objectives"] = ["params", "decode_ms@4096/x86"]
    cfg.write_text(yaml.safe_dump({"database_url": f"sqlite:///{db_file}", "search": search}))
    r = CliRunner().invoke(app, ["search", "run", "--dry-run", "-c", str(cfg)])
    assert r.exit_code == 2 and "objectives[1]: context 4096 is not in contexts" in r.output


def test_search_list_and_delete_remove_a_run_with_what_it_made(
        tmp_path: Any, db: Database, artifacts: ArtifactStore) -> None:
    import yaml
    from typer.testing import CliRunner

    from star.cli.main import app

    run_study(db, artifacts, generations=1)
    cfg = tmp_path / "lab.yaml"
    cfg.write_text(yaml.safe_dump({"database_url": str(db.engine.url),
                                   "data_dir": str(tmp_path / "data"),
                                   "artifact_store": str(artifacts.root)}))
    r = CliRunner().invoke(app, ["search", "list", "--json", "-c", str(cfg)])
    assert r.exit_code == 0 and [x["run"] for x in __import__("json").loads(r.output)] == [
        "study"]
    with db.session_scope(readonly=True) as s:
        paths = [artifacts.resolve(a.path) for a in repo.list_artifacts(s, limit=1000)]
    assert paths and all(p.exists() for p in paths)
    r = CliRunner().invoke(app, ["search", "delete", "study", "--yes", "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    with db.session_scope(readonly=True) as s:
        assert repo.list_runs(s) == [] and repo.list_jobs(s) == []
        assert repo.list_artifacts(s) == [] and repo.list_measurements(s) == []
    assert not any(p.exists() for p in paths)  # the GGUF files went with their rows
    r = CliRunner().invoke(app, ["search", "delete", "study", "--yes", "-c", str(cfg)])
    assert r.exit_code == 2 and "RUN: no run named 'study'" in r.output


def test_two_runs_of_the_same_genomes_share_files_but_each_measures_its_candidates(
        db: Database, artifacts: ArtifactStore) -> None:
    """Artifacts are content-addressed: the same genome and seed in a second run export the
    same bytes. The second run's candidates are still linked to the file and measured (this
    once left them with no jobs and infeasible)."""
    run_study(db, artifacts, generations=1, baselines=[])
    cfg = search_config(name="again", **{**STUDY, "generations": 1, "baselines": []})
    device = SimulatedDevice(db, cfg, name="lap2")
    assert SearchEngine.create(db, artifacts, cfg, on_phase=device).run() is RunStatus.DONE
    with db.session_scope(readonly=True) as s:
        first, again = (repo.get_run_by_name(s, n) for n in ("study", "again"))
        gens = [repo.list_generations(s, r.id)[0].state for r in (first, again)]
        arts = repo.list_artifacts(s, limit=1000)
    assert gens[0]["genome_ids"] == gens[1]["genome_ids"]  # the same seed asks the same
    assert gens[1]["reasons"] == gens[0]["reasons"]  # measured alike, feasible alike
    assert len(device.ran) > 0 and len(arts) == len({a.sha256 for a in arts})  # shared files


def test_a_minimum_budget_keeps_a_study_size_matched(db: Database,
                                                     artifacts: ArtifactStore) -> None:
    """``{metric: params, min: ...}``: without the surrogate, a candidate below the minimum is
    infeasible before any device time, named with the minimum; with it, none is even asked
    (the surrogate predicts an analytic metric exactly)."""
    from star.search.rundata import evaluate_run, load_run

    minimum = {"budgets": [{"metric": "params", "min": 0.4, "max": 1.3}], "baselines": [],
               "generations": 1, "population": 8}
    cfg, _ = run_study(db, artifacts, operators={"layers": [1, 6], "surrogate": False},
                       **minimum)
    assert [b.text() for b in cfg.bounds()] == ["params <= 1.3", "params >= 0.4"]
    with db.session_scope(readonly=True) as s:
        data = load_run(s, "study")
    evaluations = evaluate_run(data)
    small = [e for e in evaluations.values() if (e.values["params"] or 0) < 0.4]
    assert small, "the plain sampler made some small genomes"
    for e in small:
        assert not e.feasible and "< minimum 0.4" in e.reason
        cand = data.candidates[e.genome_id]
        assert not cand.analytic_costs["prescreen"]["ok"]  # screened out: no device time
        assert data.jobs.get(cand.id, []) == []
    assert any(e.feasible for e in evaluations.values())

    cfg2 = search_config(name="sized", **{**STUDY, **minimum,
                                          "operators": {"layers": [1, 6]}})
    device = SimulatedDevice(db, cfg2, name="lap2")
    assert SearchEngine.create(db, artifacts, cfg2, on_phase=device).run() is RunStatus.DONE
    with db.session_scope(readonly=True) as s:
        data2 = load_run(s, "sized")
    assert all((e.values["params"] or 0) >= 0.4 for e in evaluate_run(data2).values())

"""Run routes on a live coordinator: launching a search run (validated before anything is
written), the frontier from stored rows (device filter, objective choice), the candidate detail
and the measurements CSV. Rows are made through repository functions: no engine runs here."""

from __future__ import annotations

import csv
import io
import os
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from star.db import Database, repo
from star.db.store import ArtifactStore
from star.search.config import parse_search_config
from tests.conftest import ROOT
from tests.factories import api, make_device, make_report
from tests.lab.conftest import Lab

GENOME = "genomes/lfm2-350m.yaml"
OBJECTIVES = ["params", "kv_bytes_per_token", "ttft_ms@128/x86"]
# (params, kv bytes per token): the first four are mutually non-dominated, the fifth is
# dominated by the second; the sixth has no measurement (infeasible).
FIGURES = [(1e6, 400), (2e6, 300), (3e6, 200), (4e6, 100), (4.5e6, 350), (0.5e6, 50)]


def config_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "seeded", "seed": 1, "population": 4, "generations": 1,
        "base_genome": str(ROOT / GENOME), "seed_genomes": [str(ROOT / GENOME)],
        "deploy_scale": {"d_model": 64, "head_dim": 16, "vocab_size": 256,
                         "context_length": 2048},
        "quant": "q8_0", "contexts": [64, 128], "repetitions": 1, "n_gen": 4,
        "objectives": OBJECTIVES, "poll_interval_s": 0.1,
    }
    doc.update(overrides)
    return doc


@dataclass
class Seeded:
    run_id: int
    candidates: list[int]  # in FIGURES order
    front: list[int]


def seed_run(db: Database, store: ArtifactStore) -> Seeded:
    """A finished run: a device "lap" (x86), six candidates, five measured at 64 and 128."""
    device, _ = make_device(db, "lap", "x86", tags=("ci",))
    config = parse_search_config(config_doc(), base_dir=ROOT)
    with db.session_scope() as s:
        run = repo.create_run(s, name=config.name, seed=config.seed,
                              config={"search": config.to_json(), "status": "done"})
        gen = repo.create_generation(s, run_id=run.id, index=0)
    ids: list[int] = []
    for i, (params, kv) in enumerate(FIGURES):
        with db.session_scope() as s:
            cand = repo.add_candidate(
                s, run_id=run.id, generation_id=gen.id,
                genome={"encoding": 1, "genes": [i, 1, 2]},
                arch_spec={"arch": "lfm2", "n_layers": 2 + i},
                analytic_costs={"params": params, "kv_bytes_per_token": kv,
                                "prescreen": {"ok": True, "arch": "lfm2"}},
                proxy_metrics={"quality": 3.0 - i * 0.1},
            )
        ids.append(cand.id)
        if i == len(FIGURES) - 1:
            continue  # never measured
        relative, sha, size = store.put_chunks([os.urandom(256)], fmt="gguf")
        with db.session_scope() as s:
            art = repo.register_artifact(s, sha256=sha, size_bytes=size, path=relative,
                                         format="gguf", quant="q8_0", candidate_id=cand.id)
            repo.create_profile_job(s, artifact_id=art.id, contexts=(64, 128), repetitions=2,
                                    device_kind="x86", candidate_id=cand.id)
        with db.session_scope() as s:
            lease = repo.lease_job(s, device=device, lease_seconds=60)
            assert lease is not None and lease.job.candidate_id == cand.id
        with db.session_scope() as s:
            repo.submit_result(s, job_id=lease.job.id, device_id=device.id,
                               lease_token=lease.lease_token, idempotency_key=f"k{cand.id}",
                               report=make_report(sha, contexts=(64, 128), temp_c=36.0 + i))
    return Seeded(run.id, ids, ids[:4])


@pytest.fixture
def seeded(lab: Lab) -> Seeded:
    return seed_run(lab.db, lab.store)


def _locs(r: Any) -> list[list[Any]]:
    assert r.status_code == 422, r.text
    return [e["loc"] for e in r.json()["detail"]]


# ---- launch --------------------------------------------------------------------------------


def test_launch_validates_before_creating(lab: Lab) -> None:
    admin = lab.admin
    r = admin.post(api("/runs"), json=config_doc(objectives=["params", "bogus_metric"]))
    assert ["body", "objectives", 1] in _locs(r) or ["body", "objectives"] in _locs(r), r.text
    assert "bogus_metric" in r.text

    # a measured objective with no registered device of its class
    r = admin.post(api("/runs"), json=config_doc(objectives=["params", "ttft_ms@64/android:s24"]))
    assert ["body", "objectives", 1] in _locs(r)
    assert "no registered device of class 'android:s24'" in r.text

    r = admin.post(api("/runs"), json=config_doc(population=0))
    assert ["body", "population"] in _locs(r)
    r = admin.post(api("/runs"), json=config_doc(seed_genomes=["no/such.yaml"]))
    assert ["body", "seed_genomes", 0] in _locs(r)

    assert admin.get(api("/runs")).json()["count"] == 0  # nothing was created
    assert lab.client().post(api("/runs"), json=config_doc()).status_code == 401


def test_launch_records_or_starts(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    from star.search.engine import SearchEngine
    from star.search.store import RunStatus

    lab.register("lap", "x86")
    r = lab.admin.post(api("/runs"), params={"start": "false"}, json=config_doc(name="later"))
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["name"] == "later" and run["status"] == "stopped"
    assert run["config"]["search"]["objectives"] == OBJECTIVES
    r = lab.admin.post(api("/runs"), json=config_doc(name="later"))
    assert r.status_code == 409 and "later" in r.text

    ran = threading.Event()

    def fake_run(self: SearchEngine, **_: Any) -> RunStatus:  # the server runs in this process
        ran.set()
        return RunStatus.DONE

    monkeypatch.setattr(SearchEngine, "run", fake_run)
    r = lab.admin.post(api("/runs"), json=config_doc(name="now"))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "running"
    assert ran.wait(10), "the engine thread was not started"


# ---- frontier ------------------------------------------------------------------------------


def test_frontier(lab: Lab, seeded: Seeded) -> None:
    url = api(f"/runs/{seeded.run_id}/frontier")
    body = lab.admin.get(url).json()
    assert body["objectives"] == OBJECTIVES == body["selected"]
    assert body["count"] == 6 and body["front"] == 4
    on = {p["candidate_id"] for p in body["data"] if p["on_front"]}
    assert on == set(seeded.front)
    missing = next(p for p in body["data"] if p["candidate_id"] == seeded.candidates[-1])
    assert not missing["feasible"] and "ttft_ms@128/x86" in missing["reason"]
    first = next(p for p in body["data"] if p["candidate_id"] == seeded.candidates[0])
    assert first["values"] == {"params": 1.0, "kv_bytes_per_token": 400.0,
                               "ttft_ms@128/x86": 64.0}
    assert first["url"] == api(f"/candidates/{seeded.candidates[0]}")

    # objective choice: on params alone the front is the single smallest feasible candidate
    body = lab.admin.get(url, params={"objectives": "params"}).json()
    assert body["selected"] == ["params"]
    assert [p["candidate_id"] for p in body["data"] if p["on_front"]] == [seeded.candidates[0]]
    body = lab.admin.get(url, params={"objectives": "kv_bytes_per_token,params"}).json()
    assert body["front"] == 4
    r = lab.admin.get(url, params={"objectives": "params,latency"})
    assert ["query", "objectives"] in _locs(r) and "latency" in r.text

    # device filter: by name (same rows), by class (retargeted, nothing measured there)
    body = lab.admin.get(url, params={"device": "lap"}).json()
    assert body["device"] == "lap" and body["front"] == 4
    body = lab.admin.get(url, params={"device": "x86:ci"}).json()
    assert body["front"] == 4 and body["objectives"][2] == "ttft_ms@128/x86:ci"
    body = lab.admin.get(url, params={"device": "android:s24",
                                      "objectives": "params,ttft_ms@128/x86"}).json()
    assert body["front"] == 0 and body["selected"] == ["params", "ttft_ms@128/android:s24"]
    r = lab.admin.get(url, params={"device": "ghost"})
    assert ["query", "device"] in _locs(r) and "ghost" in r.text
    assert lab.admin.get(api("/runs/999/frontier")).status_code == 404


# ---- candidate detail, CSV -----------------------------------------------------------------


def test_candidate_detail(lab: Lab, seeded: Seeded) -> None:
    cid = seeded.candidates[1]
    c = lab.admin.get(api(f"/candidates/{cid}")).json()
    assert c["genome"] == {"encoding": 1, "genes": [1, 1, 2]}
    assert c["arch"] == "lfm2" and c["arch_spec"]["n_layers"] == 3 and c["generation"] == 0
    assert c["analytic_costs"]["params"] == 2e6 and c["proxy_metrics"]["quality"] == 2.9
    assert [m["context"] for m in c["measurements"]] == [64, 128]
    m = c["measurements"][1]
    assert m["device_name"] == "lap" and m["device_kind"] == "x86" and m["device_tags"] == ["ci"]
    assert m["ttft_median_ms"] == 64.0 and m["ttft_stddev_ms"] == pytest.approx(0.64)
    assert m["decode_stddev_ms"] == pytest.approx(0.05) and len(m["ttft_samples_ms"]) == 2
    assert m["temp_before_c"] == 37.0 and m["temp_after_c"] == 38.0
    assert m["runtime"]["llama_cpp_commit"] == "abc1234"
    (art,) = c["artifacts"]
    assert art["url"] == api(f"/artifacts/{art['id']}/content") and art["quant"] == "q8_0"
    got = lab.admin.get(art["url"])
    assert got.status_code == 200 and len(got.content) == 256
    assert lab.admin.get(api("/candidates/99999")).status_code == 404


def test_measurements_csv(lab: Lab, seeded: Seeded) -> None:
    r = lab.admin.get(api(f"/runs/{seeded.run_id}/measurements.csv"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    try:
        import pandas as pd
    except ImportError:
        pd = None
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 10  # 5 measured candidates x 2 contexts
    row = rows[2]
    assert row["run"] == "seeded" and row["generation"] == "0"
    assert int(row["candidate_id"]) == seeded.candidates[1] and row["arch"] == "lfm2"
    assert row["quant"] == "q8_0" and row["device_name"] == "lap"
    assert row["device_kind"] == "x86" and row["device_tags"] == "ci"
    assert row["llama_cpp_commit"] == "abc1234" and row["threads"] == "2"
    assert row["flash_attn"] == "False" and row["cache_type_k"] == "f16"
    assert float(row["temp_before_c"]) == 37.0 and row["oom"] == "False"
    assert row["created_at"] and len(row["genome_id"]) == 64
    for col in ("ttft_median_ms", "ttft_stddev_ms", "decode_median_ms", "decode_stddev_ms",
                "peak_rss_bytes", "error", "temp_after_c", "flagged_hot", "flagged_noisy",
                "cache_type_v", "context"):
        assert col in row
    if pd is not None:
        frame = pd.read_csv(io.StringIO(r.text))
        assert len(frame) == 10 and frame["ttft_median_ms"].dtype.kind == "f"
    empty = lab.admin.get(api("/runs/999/measurements.csv"))
    assert empty.status_code == 404

"""Jobs over the real API: lease CAS under concurrency, expiry -> requeue -> failure, idempotent
results, 422 naming the field, and the security rules."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from device_agents.protocol import SHA256_HEADER
from tests.factories import api, make_report
from tests.lab.conftest import Lab, start_lab
from tests.support.wait import wait_for


@pytest.fixture(params=["sqlite", "postgresql"])
def any_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    yield from start_lab(tmp_path, request.param)


@pytest.fixture
def fast_lab(tmp_path: Path) -> Iterator[Lab]:
    """Short leases and a fast reaper, for expiry tests."""
    yield from start_lab(tmp_path, lease_seconds=0.6, reaper_interval_s=0.2)


@pytest.fixture
def steady_lab(tmp_path: Path) -> Iterator[Lab]:
    """Leases of 2 s: long enough that a loaded CI machine's latency spike between two
    heartbeats 0.4 s apart cannot expire them, short enough that the test outlives one."""
    yield from start_lab(tmp_path, lease_seconds=2.0, reaper_interval_s=0.2)


def _lease(lab: Lab, token: str) -> dict[str, Any] | None:
    with lab.client(token) as agent:
        r = agent.post(api("/agent/lease"))
    assert r.status_code == 200, r.text
    return r.json()["job"]


def _job(lab: Lab, job_id: int) -> dict[str, Any]:
    return lab.admin.get(api(f"/jobs/{job_id}")).json()  # type: ignore[no-any-return]


def _submission(spec: dict[str, Any], key: str = "idem-key-0001", **kw: Any) -> dict[str, Any]:
    report = make_report(spec["artifact"]["sha256"], spec["contexts"], **kw)
    return {
        "lease_token": spec["lease_token"],
        "idempotency_key": key,
        "report": report.model_dump(mode="json"),
    }


def test_concurrent_leases_over_http_take_each_job_once(any_lab: Lab) -> None:
    lab = any_lab
    tokens = [lab.register(f"d{i}") for i in range(8)]
    art = lab.upload(b"gguf bytes")
    jobs = {lab.job(art["id"])["id"] for _ in range(24)}
    leased: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(tokens))
    errors: list[str] = []

    def agent(token: str) -> None:
        with lab.client(token) as http:
            barrier.wait()
            while True:
                r = http.post(api("/agent/lease"))
                if r.status_code != 200:
                    errors.append(r.text)
                    return
                job = r.json()["job"]
                if job is None:
                    return
                with lock:
                    leased.append(job["job_id"])

    threads = [threading.Thread(target=agent, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(leased) == sorted(jobs)  # every job once, none twice


def test_lease_expiry_requeues_counts_attempts_and_fails_with_reason(fast_lab: Lab) -> None:
    lab = fast_lab
    token = lab.register("flaky")
    art = lab.upload(b"model")
    job = lab.job(art["id"], max_attempts=2)
    first = _lease(lab, token)
    assert first is not None and first["attempt"] == 1
    requeued = wait_for("the reaper to requeue the expired job",
                        lambda: (j := _job(lab, job["id"]))["state"] == "queued" and j, 10)
    assert requeued["attempts"] == 1 and "lease expired" in requeued["last_error"]
    second = _lease(lab, token)
    assert second is not None and second["attempt"] == 2
    assert second["lease_token"] != first["lease_token"]
    failed = wait_for("the job to fail after max attempts",
                      lambda: (j := _job(lab, job["id"]))["state"] == "failed" and j, 10)
    assert failed["attempts"] == 2 and "failed after 2 attempts" in failed["last_error"]
    assert _lease(lab, token) is None
    # The first attempt's result arrives too late: the job is finished.
    with lab.client(token) as agent:
        r = agent.post(api(f"/agent/jobs/{job['id']}/result"), json=_submission(first))
    assert r.status_code == 409


def test_heartbeats_keep_a_lease_the_reaper_takes_from_a_silent_holder(steady_lab: Lab) -> None:
    """Two jobs leased together: the reaper requeues the one whose holder is silent, while
    the one heartbeated every 0.4 s stays leased, its expiry moved on by each beat."""
    lab = steady_lab
    art = lab.upload(b"model")
    for _ in range(2):
        lab.job(art["id"])
    steady, silent = lab.register("steady"), lab.register("silent")
    spec, quiet = _lease(lab, steady), _lease(lab, silent)
    assert spec is not None and quiet is not None
    first_expiry = datetime.fromisoformat(_job(lab, spec["job_id"])["lease_expires_at"])
    beat = {"job_id": spec["job_id"], "lease_token": spec["lease_token"]}
    expiries = [first_expiry]
    with lab.client(steady) as agent:

        def beat_until_the_silent_lease_is_reaped() -> bool:
            r = agent.post(api("/agent/heartbeat"), json=beat)
            assert r.status_code == 200 and r.json()["lease_valid"] is True, r.text
            expiries.append(datetime.fromisoformat(r.json()["lease_expires_at"]))
            return _job(lab, quiet["job_id"])["state"] == "queued"

        # the interval paces the heartbeats (an agent's heartbeat_interval_s)
        wait_for("the reaper to requeue the silent holder's job",
                 beat_until_the_silent_lease_is_reaped, 30, interval_s=0.4)
        held = _job(lab, spec["job_id"])
        assert held["state"] == "leased" and held["attempts"] == 0
        assert datetime.fromisoformat(held["lease_expires_at"]) == expiries[-1] > first_expiry
        assert expiries == sorted(expiries)  # each beat moves the expiry on, never back
        reaped = _job(lab, quiet["job_id"])
        assert reaped["attempts"] == 1 and "lease expired" in reaped["last_error"]
        r = agent.post(api(f"/agent/jobs/{spec['job_id']}/result"), json=_submission(spec))
    assert r.status_code == 200 and r.json()["state"] == "done"


def test_result_submission_is_idempotent(lab: Lab) -> None:
    token = lab.register("m1")
    art = lab.upload(b"model-1")
    lab.job(art["id"])
    spec = _lease(lab, token)
    assert spec is not None
    body = _submission(spec, temp_c=60.0)
    with lab.client(token) as agent:
        first = agent.post(api(f"/agent/jobs/{spec['job_id']}/result"), json=body)
        second = agent.post(api(f"/agent/jobs/{spec['job_id']}/result"), json=body)
        other_key = agent.post(
            api(f"/agent/jobs/{spec['job_id']}/result"), json={**body, "idempotency_key": "x" * 12}
        )
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["flagged_hot"] == [128, 256]
    assert other_key.status_code == 409
    rows = lab.admin.get(api("/measurements"), params={"job_id": spec["job_id"]}).json()
    assert rows["count"] == 2


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("contexts.0.ttft_ms.median", -1.0),
        ("contexts.1.decode_ms_per_token.stddev", float("nan")),
        ("contexts.0.peak_rss_bytes", 0),
        ("contexts.1.context", 4096),  # not requested by the job
        ("model_sha256", "f" * 64),  # not the job's artifact
        ("runtime.threads", 0),
        ("contexts.0.ttft_ms.samples", [1.0, float("inf")]),
    ],
)
def test_bad_measurements_are_422_naming_the_field_and_end_the_attempt(
    lab: Lab, path: str, value: Any
) -> None:
    loc: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
    token = lab.register("m1")
    art = lab.upload(b"model-2")
    job = lab.job(art["id"])
    spec = _lease(lab, token)
    assert spec is not None
    body = _submission(spec)
    target = body["report"]
    for part in loc[:-1]:
        target = target[part]
    target[loc[-1]] = value
    raw = json.dumps(body)  # NaN / Infinity go out as JSON's non-standard literals
    with lab.client(token) as agent:
        r = agent.post(
            api(f"/agent/jobs/{spec['job_id']}/result"),
            content=raw,
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 422, r.text
    locs = [d["loc"] for d in r.json()["detail"]]
    assert any(found[: len(loc) + 2] == ["body", "report", *loc] for found in locs), locs
    # the refused result ends the attempt: the job is back in the queue, the refusal its error
    after = lab.admin.get(api(f"/jobs/{job['id']}")).json()
    assert (after["state"], after["attempts"]) == ("queued", 1), after
    assert "refused its result" in after["last_error"] and loc[-1] in after["last_error"]


def test_security_tokens_and_ownership(lab: Lab) -> None:
    mine = lab.register("mine")
    theirs = lab.register("theirs")
    art = lab.upload(b"model-3")
    lab.job(art["id"])
    spec = _lease(lab, mine)
    assert spec is not None
    result_url = api(f"/agent/jobs/{spec['job_id']}/result")
    body = _submission(spec)
    with lab.client() as anonymous:
        assert anonymous.post(api("/agent/lease")).status_code == 401
        assert anonymous.post(result_url, json=body).status_code == 401
        assert anonymous.get(api("/devices")).status_code == 401
        assert anonymous.get(api(f"/artifacts/{art['id']}/content")).status_code == 401
    with lab.client("not-a-token") as forged:
        assert forged.post(api("/agent/lease")).status_code == 401
    with lab.client(theirs) as other:
        assert other.post(result_url, json=body).status_code == 403  # another device's job
        beat = {"job_id": spec["job_id"], "lease_token": spec["lease_token"]}
        assert other.post(api("/agent/heartbeat"), json=beat).status_code == 403
        failure = {"lease_token": spec["lease_token"], "reason": "sabotage"}
        assert (
            other.post(api(f"/agent/jobs/{spec['job_id']}/failure"), json=failure).status_code
            == 403
        )
        assert other.get(api("/devices")).status_code == 403  # a device token is not an operator
        assert other.post(api("/devices"), json={"name": "x", "kind": "x86"}).status_code == 403
    with lab.client(lab.settings.admin_token.get_secret_value()) as admin_as_agent:  # type: ignore[union-attr]
        assert admin_as_agent.post(api("/agent/lease")).status_code == 401
    with lab.client(mine) as agent:
        wrong_token = {**body, "lease_token": "0" * 32}
        assert agent.post(result_url, json=wrong_token).status_code == 409
        assert agent.post(result_url, json=body).status_code == 200


def test_artifacts_are_served_with_sha256_and_never_outside_the_store(lab: Lab) -> None:
    payload = b"GGUF" + bytes(range(256)) * 64
    art = lab.upload(payload)
    sha = hashlib.sha256(payload).hexdigest()
    assert art["sha256"] == sha and art["size_bytes"] == len(payload)
    assert lab.upload(payload)["id"] == art["id"]  # content-addressed
    token = lab.register("reader")
    with lab.client(token) as agent:
        r = agent.get(api(f"/artifacts/{art['id']}/content"))
        assert r.status_code == 200 and r.content == payload
        assert r.headers[SHA256_HEADER] == sha
        for bad in ("..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "-1", "1.5", "%00"):
            resp = agent.get(api(f"/artifacts/{bad}/content"))
            assert resp.status_code in (404, 422), (bad, resp.status_code)
            assert b"root:" not in resp.content
        assert agent.get(api("/artifacts/999/content")).status_code == 404
    # A tampered row cannot point outside the store either.
    from sqlalchemy import update

    from star.db.models import Artifact

    secret = Path(lab.settings.data_dir).parent / "secret.txt"
    secret.write_text("root:x:0:0")
    with lab.db.session_scope() as s:
        s.execute(update(Artifact).where(Artifact.id == art["id"]).values(path="../../secret.txt"))
    with lab.client(token) as agent:
        r = agent.get(api(f"/artifacts/{art['id']}/content"))
    assert r.status_code == 404 and b"root:" not in r.content


def test_upload_checks_the_declared_sha256(lab: Lab) -> None:
    r = lab.admin.post(
        api("/artifacts"),
        params={"quant": "q4_0"},
        content=b"abc",
        headers={SHA256_HEADER: "0" * 64, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "header", SHA256_HEADER]
    empty = lab.admin.post(api("/artifacts"), params={"quant": "q4_0"}, content=b"")
    assert empty.status_code == 422


def test_job_create_validation(lab: Lab) -> None:
    art = lab.upload(b"m")
    for body, loc in [
        ({"artifact_id": art["id"], "contexts": [0], "device_kind": "x86"}, ["body", "contexts"]),
        ({"artifact_id": art["id"], "contexts": [128]}, ["body"]),
        (
            {"artifact_id": art["id"], "contexts": [1, 1], "device_kind": "x86"},
            ["body", "contexts"],
        ),
    ]:
        r = lab.admin.post(api("/jobs"), json=body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, r.text
    missing = lab.admin.post(
        api("/jobs"), json={"artifact_id": 999, "contexts": [1], "device_kind": "x86"}
    )
    assert missing.status_code == 404
    unknown_device = lab.admin.post(
        api("/jobs"), json={"artifact_id": art["id"], "contexts": [1], "device": "nope"}
    )
    assert unknown_device.status_code == 404


def test_phone_reported_gone_requeues_its_job(lab: Lab) -> None:
    token = lab.register("phone", "android")
    art = lab.upload(b"m")
    job = lab.job(art["id"], device_kind="android")
    spec = _lease(lab, token)
    assert spec is not None
    with lab.client(token) as agent:
        failure = {
            "lease_token": spec["lease_token"],
            "reason": "adb: device offline",
            "device_gone": True,
        }
        r = agent.post(api(f"/agent/jobs/{spec['job_id']}/failure"), json=failure)
    assert r.status_code == 200 and r.json()["state"] == "queued"
    device = lab.admin.get(api("/devices/phone")).json()
    assert device["online"] is False and "offline" in device["status_reason"]
    assert lab.admin.get(api(f"/jobs/{job['id']}")).json()["attempts"] == 1

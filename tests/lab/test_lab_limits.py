"""The API refuses what it cannot store, over real HTTP on SQLite and PostgreSQL.

Each bad body found by probing the running service (NaN, infinite and 1e308 temperatures, a
1e308 ms TTFT, 2^70 threads, a 10 MB error string, 1.5 million samples, a 2^70 peak RSS, ids
of 2^31 and 2^63 in every path and query) is a 422 that names the field, never a 500; a refused
result ends its attempt (the job is requeued, not left leased); a body over the size limit is
a 413; text the database cannot hold (NUL, lone surrogates) is a 422 naming its field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from device_agents.schemas import MAX_BYTES, MAX_SAMPLES
from tests.factories import ADMIN_TOKEN, api, make_report
from tests.lab.conftest import Lab, start_lab

BIG_IDS = [2**31, 2**63]  # past PostgreSQL's int4 (the id columns) and past SQLite's int64


@pytest.fixture(params=["sqlite", "postgresql"])
def any_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    yield from start_lab(tmp_path, request.param)


@pytest.fixture
def small_lab(tmp_path: Path) -> Iterator[Lab]:
    """A coordinator whose body limit (64 KiB) and artifact limit (256 KiB) a test can pass."""
    yield from start_lab(tmp_path, max_body_bytes=64 * 1024, max_artifact_bytes=256 * 1024)


def _post_raw(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    # json.dumps writes NaN / Infinity as JSON's non-standard literals, as a broken agent would
    return http.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


def _locs(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text[:500]
    return [d["loc"] for d in response.json()["detail"]]


def _names(response: httpx.Response, *loc: Any) -> bool:
    return any(found[: len(loc)] == list(loc) for found in _locs(response))


# --- results: each bad figure is a 422 naming it, and the attempt ends ------------------------

BAD_FIGURES: list[tuple[str, Any]] = [
    ("contexts.0.thermal_before.zones.cpu", float("nan")),
    ("contexts.0.thermal_before.zones.cpu", float("inf")),
    ("contexts.0.thermal_after.zones.cpu", float("-inf")),
    ("contexts.0.thermal_after.zones.cpu", 1e308),
    ("contexts.0.ttft_ms.median", 1e308),
    ("contexts.1.decode_ms_per_token.stddev", 1e308),
    ("runtime.threads", 2**70),
    ("contexts.0.error", "x" * 10_000_000),
    ("contexts.0.ttft_ms.samples", [1.0] * 1_500_000),
    ("contexts.1.peak_rss_bytes", 2**70),
    ("contexts.0.peak_rss_bytes", MAX_BYTES + 1),
    ("model_bytes", 2**63),
    ("contexts.0.context", 2**63),
    ("contexts.0.thermal_before.status", 2**63),
]


def test_every_impossible_figure_is_refused_by_name_and_ends_the_attempt(any_lab: Lab) -> None:
    lab = any_lab
    token = lab.register("probe")
    art = lab.upload(b"GGUF-bounds")
    job = lab.job(art["id"], max_attempts=100)
    with lab.client(token) as agent:
        for attempt, (path, value) in enumerate(BAD_FIGURES, start=1):
            spec = agent.post(api("/agent/lease")).json()["job"]
            assert spec is not None and spec["job_id"] == job["id"], (path, spec)
            report = make_report(art["sha256"], spec["contexts"]).model_dump(mode="json")
            loc: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
            target = report
            for part in loc[:-1]:
                target = target[part]
            target[loc[-1]] = value
            body = {"lease_token": spec["lease_token"], "idempotency_key": f"bad-{attempt:08d}",
                    "report": report}
            r = _post_raw(agent, api(f"/agent/jobs/{job['id']}/result"), body)
            # a zone's temperature may be named at the zone or at the zones mapping
            named = loc[:-1] if "zones" in loc else loc
            assert _names(r, "body", "report", *named), (path, r.text[:500])
            assert len(r.content) < 20_000, path  # the refused value is not echoed back whole
            after = lab.admin.get(api(f"/jobs/{job['id']}")).json()
            assert (after["state"], after["attempts"]) == ("queued", attempt), (path, after)
            assert str(named[-1]) in after["last_error"], (path, after["last_error"])
    assert lab.admin.get(api("/measurements"), params={"job_id": job["id"]}).json()["count"] == 0


def test_samples_up_to_the_bound_are_stored(any_lab: Lab) -> None:
    """The bounds refuse the impossible, not the large: MAX_SAMPLES samples are a result."""
    lab = any_lab
    token = lab.register("many")
    art = lab.upload(b"GGUF-many-samples")
    job = lab.job(art["id"])
    with lab.client(token) as agent:
        spec = agent.post(api("/agent/lease")).json()["job"]
        report = make_report(art["sha256"], spec["contexts"]).model_dump(mode="json")
        report["contexts"][0]["ttft_ms"]["samples"] = [64.0] * MAX_SAMPLES
        report["runtime"]["threads"] = 512
        report["contexts"][0]["thermal_before"]["zones"]["wifi"] = -274.0  # iwlwifi, radio off
        body = {"lease_token": spec["lease_token"], "idempotency_key": "many-samples",
                "report": report}
        r = _post_raw(agent, api(f"/agent/jobs/{job['id']}/result"), body)
    assert r.status_code == 200, r.text[:500]
    assert lab.admin.get(api(f"/jobs/{job['id']}")).json()["state"] == "done"


# --- other agent and operator bodies -----------------------------------------------------------


def test_bad_agent_and_operator_bodies_are_refused_by_name(any_lab: Lab) -> None:
    lab = any_lab
    token = lab.register("bodies")
    art = lab.upload(b"GGUF-bodies")
    lab.job(art["id"])
    with lab.client(token) as agent:
        spec = agent.post(api("/agent/lease")).json()["job"]
        lease = spec["lease_token"]
        cases: list[tuple[str, str, Any, tuple[Any, ...]]] = [
            ("POST", "/agent/heartbeat", {"job_id": 2**63, "lease_token": lease}, ("job_id",)),
            ("POST", "/agent/heartbeat", {"job_id": 2**31, "lease_token": lease}, ("job_id",)),
            ("POST", "/agent/heartbeat", {"online": False, "reason": "gone\x00"}, ("reason",)),
            ("POST", "/agent/heartbeat", {"online": False, "reason": "x" * 10_000_000},
             ("reason",)),
            ("POST", f"/agent/jobs/{spec['job_id']}/failure",
             {"lease_token": lease, "reason": "y" * 10_000_000}, ("reason",)),
            ("PUT", "/agent/properties",
             {"properties": {"kind": "x86", "ram_bytes": 2**70}}, ("properties", "ram_bytes")),
            ("PUT", "/agent/properties",
             {"properties": {"kind": "x86", "cpu_cores": 2**70}}, ("properties", "cpu_cores")),
        ]
        for method, path, body, loc in cases:
            r = agent.request(method, api(path), content=json.dumps(body),
                              headers={"Content-Type": "application/json"})
            assert _names(r, "body", *loc), (path, loc, r.text[:300])
        # a lone surrogate cannot be stored (nor encoded): refused by name, and the 422 renders
        raw = b'{"online": false, "reason": "\\ud800 gone"}'
        r = agent.post(api("/agent/heartbeat"), content=raw,
                       headers={"Content-Type": "application/json"})
        assert _names(r, "body", "reason")
        # not UTF-8 at all: the body is refused as a whole, still a 422
        r = agent.post(api("/agent/heartbeat"), content=b'{"reason": "\xff\xfe"}',
                       headers={"Content-Type": "application/json"})
        assert _names(r, "body")
    assert lab.admin.get(api(f"/jobs/{spec['job_id']}")).json()["state"] == "leased"
    for body, loc in [({"artifact_id": 2**63, "contexts": [128], "device_kind": "x86"},
                       ("artifact_id",)),
                      ({"artifact_id": art["id"], "contexts": [128], "device_kind": "x86",
                        "candidate_id": 2**31}, ("candidate_id",)),
                      ({"artifact_id": art["id"], "contexts": [2**63], "device_kind": "x86"},
                       ("contexts",))]:
        r = _post_raw(lab.admin, api("/jobs"), body)
        assert _names(r, "body", *loc), (body, r.text[:300])


# --- ids in paths and queries ------------------------------------------------------------------


def _integer_parameters(lab: Lab) -> list[tuple[str, str, str, str, list[str]]]:
    """(method, path, where, name, every path parameter) for each integer path or query
    parameter in the schema."""
    doc = lab.admin.get("/openapi.json").json()
    found = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            params = op.get("parameters", [])
            in_path = [p["name"] for p in params if p["in"] == "path"]
            for param in params:
                schema = param.get("schema", {})
                types = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
                if "integer" in types:
                    found.append((method.upper(), path, param["in"], param["name"], in_path))
    return found


def test_every_integer_in_a_path_or_query_is_bounded(any_lab: Lab) -> None:
    lab = any_lab
    device = lab.client(lab.register("ids"))
    params = _integer_parameters(lab)
    assert len(params) >= 15, params  # every id, limit and offset of the API
    for method, path, where, name, in_path in params:
        http = device if path.startswith(api("/agent")) else lab.admin
        for big in BIG_IDS:
            url = path
            for other in in_path:  # the others: a valid id (or name)
                url = url.replace("{" + other + "}", str(big) if other == name else "1")
            query = {name: big} if where == "query" else {}
            r = http.request(method, url, params=query, content=None if method == "GET" else b"{}",
                             headers={"Content-Type": "application/json"})
            assert _names(r, where, name), (method, url, query, r.status_code, r.text[:300])
    device.close()


# --- body size ---------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_declared_or_streamed(small_lab: Lab) -> None:
    lab = small_lab
    token = lab.register("big")
    body = json.dumps({"online": False, "reason": "z" * 100_000}).encode()
    with lab.client(token) as agent:
        declared = agent.post(api("/agent/heartbeat"), content=body,
                              headers={"Content-Type": "application/json"})
        streamed = agent.post(api("/agent/heartbeat"), content=iter([body[:40_000], body[40_000:]]),
                              headers={"Content-Type": "application/json"})
        fine = agent.post(api("/agent/heartbeat"), json={"online": True})
    assert declared.status_code == 413, declared.text
    assert "max_body_bytes" in declared.json()["detail"]
    assert streamed.status_code == 413, streamed.text
    assert fine.status_code == 200
    # artifacts stream to disk under their own limit, not the JSON body's
    assert lab.upload(b"G" * 200_000)["size_bytes"] == 200_000
    r = lab.admin.post(api("/artifacts"), params={"quant": "f16"}, content=b"G" * 300_000,
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413 and "max_artifact_bytes" in r.json()["detail"], r.text
    assert lab.admin.get(api("/artifacts")).json()["count"] == 1


# --- what the bounds cannot reach --------------------------------------------------------------


def test_a_refused_result_never_touches_another_devices_lease(any_lab: Lab) -> None:
    lab = any_lab
    owner = lab.register("owner")
    other = lab.register("other")
    art = lab.upload(b"GGUF-not-yours")
    job = lab.job(art["id"])
    with lab.client(owner) as agent:
        spec = agent.post(api("/agent/lease")).json()["job"]
    report = make_report(art["sha256"], spec["contexts"]).model_dump(mode="json")
    report["runtime"]["threads"] = 2**70
    body = {"lease_token": spec["lease_token"], "idempotency_key": "not-my-job", "report": report}
    with lab.client(other) as intruder:  # even with the right lease token: not its job
        r = _post_raw(intruder, api(f"/agent/jobs/{job['id']}/result"), body)
    assert _names(r, "body", "report", "runtime", "threads")
    after = lab.admin.get(api(f"/jobs/{job['id']}")).json()
    assert (after["state"], after["attempts"], after["last_error"]) == ("leased", 0, None)


def test_the_run_page_id_is_bounded_like_every_id(any_lab: Lab) -> None:
    """The browser page's run id (star.lab.routes.web) is an INTEGER column's id too: past
    2^31 - 1 it is a 422 naming the bound, before any database sees it."""
    any_lab.admin.cookies.set("star_token", ADMIN_TOKEN)
    r = any_lab.admin.get(f"/runs/{2**63}")
    assert r.status_code == 422, r.text
    assert re.search(r"less than or equal to 2147483647", r.json()["detail"][0]["msg"]), r.text

"""Devices over the real API: registration, properties, liveness, retirement, and the CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.factories import ADMIN_TOKEN, api
from tests.lab.conftest import Lab

PROPS = {
    "kind": "android",
    "model": "SM-S921B",
    "soc": "s5e9945",
    "abi": "arm64-v8a",
    "ram_bytes": 8_000_000_000,
    "os": "Android 14 (SDK 34)",
    "cpu": "Exynos 2400",
    "cpu_cores": 10,
}


def test_register_returns_the_token_once_and_lists_without_it(lab: Lab) -> None:
    token = lab.register("s24-01", "android", serial="R5CX", tags=["s24", "big"])
    assert len(token) >= 32
    listed = lab.admin.get(api("/devices")).json()
    assert listed["count"] == 1
    assert token not in json.dumps(listed)
    device = listed["data"][0]
    assert device["tags"] == ["big", "s24"] and device["online"] is False
    one = lab.admin.get(api("/devices/s24-01"))
    assert one.status_code == 200 and token not in one.text  # nor when read alone
    dup = lab.admin.post(api("/devices"), json={"name": "s24-01", "kind": "android"})
    assert dup.status_code == 409 and token not in dup.text  # registering again gives none


def test_registration_input_errors_name_the_field(lab: Lab) -> None:
    bad = lab.admin.post(api("/devices"), json={"name": "../etc", "kind": "x86"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "name"]
    bad = lab.admin.post(api("/devices"), json={"name": "ok", "kind": "ios"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "kind"]


def test_agent_reports_properties_and_liveness(lab: Lab) -> None:
    token = lab.register("s24-01", "android")
    with lab.client(token) as agent:
        assert agent.get(api("/agent/me")).json()["name"] == "s24-01"
        r = agent.put(api("/agent/properties"), json={"properties": PROPS})
        assert r.status_code == 200 and r.json()["properties"]["soc"] == "s5e9945"
        wrong = agent.put(api("/agent/properties"), json={"properties": {**PROPS, "kind": "x86"}})
        assert wrong.status_code == 422
        assert wrong.json()["detail"][0]["loc"] == ["body", "properties", "kind"]
        beat = agent.post(api("/agent/heartbeat"), json={"online": True})
        assert beat.status_code == 200 and beat.json()["server_time"]
        device = lab.admin.get(api("/devices/s24-01")).json()
        assert device["online"] is True and device["last_seen_at"] is not None
        gone = agent.post(api("/agent/heartbeat"), json={"online": False, "reason": "unplugged"})
        assert gone.status_code == 200
    device = lab.admin.get(api("/devices/s24-01")).json()
    assert device["online"] is False and device["status_reason"] == "unplugged"


def test_retired_device_token_stops_working(lab: Lab) -> None:
    token = lab.register("old")
    assert lab.admin.post(api("/devices/old/retire")).status_code == 200
    with lab.client(token) as agent:
        assert agent.get(api("/agent/me")).status_code == 401
    assert lab.admin.get(api("/devices")).json()["count"] == 0
    assert lab.admin.get(api("/devices"), params={"include_retired": True}).json()["count"] == 1


def test_cli_register_list_retire_through_the_api(lab: Lab, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from star.cli.main import app

    monkeypatch.setenv("STAR_COORDINATOR_URL", lab.url)
    monkeypatch.setenv("STAR_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("STAR_CONFIG", "/nonexistent/lab_config.yaml")
    runner = CliRunner()
    out = runner.invoke(app, ["device", "register", "lap-1", "--kind", "x86", "--tags", "a,b"])
    assert out.exit_code == 0, out.output
    token = out.output.strip().splitlines()[-1]
    with lab.client(token) as agent:
        assert agent.get(api("/agent/me")).json()["tags"] == ["a", "b"]
    listed = runner.invoke(app, ["device", "list", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output)["data"][0]["name"] == "lap-1"
    dup = runner.invoke(app, ["device", "register", "lap-1", "--kind", "x86"])
    assert dup.exit_code != 0 and "already exists" in dup.output
    assert runner.invoke(app, ["device", "retire", "lap-1"]).exit_code == 0
    bad = runner.invoke(app, ["device", "register", "x y", "--kind", "x86"])
    assert bad.exit_code == 2 and "name" in bad.output

"""docker-compose.yml: the services the lab needs are there and wired; `docker compose config`
(or docker-compose v1) validates it when a compose CLI is installed (no engine is needed)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from tests.factories import ROOT

COMPOSE = ROOT / "docker-compose.yml"


def test_compose_file_wires_postgres_coordinator_and_agents() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {"postgres", "migrate", "coordinator", "agent-x86", "agent-android"} <= set(services)
    coordinator = services["coordinator"]
    assert coordinator["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "postgresql+psycopg://" in coordinator["environment"]["STAR_DATABASE_URL"]
    assert coordinator["ports"] == ["127.0.0.1:8765:8765"]  # loopback only by default
    android = services["agent-android"]
    assert "/dev/bus/usb:/dev/bus/usb" in android["devices"]
    assert android["profiles"] == ["android"]
    for name in ("agent-x86", "agent-android"):
        assert services[name]["environment"]["STAR_COORDINATOR_URL"] == "http://coordinator:8765"
        assert any(v.endswith(":/agent") for v in services[name]["volumes"])  # the spool
    assert (ROOT / "Dockerfile").is_file()


def test_compose_config_validates() -> None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        cmd = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        cmd = ["docker-compose"]
    else:
        pytest.fail("no compose CLI: scripts/setup.sh installs docker-compose")
    env = {**os.environ, "STAR_ADMIN_TOKEN": "x"}
    for profile in ([], ["--profile", "android", "--profile", "tools"]):
        done = subprocess.run(
            [*cmd, "-f", str(COMPOSE), *profile, "config", "-q"],
            capture_output=True, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    missing = {k: v for k, v in env.items() if k != "STAR_ADMIN_TOKEN"}
    refused = subprocess.run([*cmd, "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                             text=True, env=missing, cwd=ROOT)  # fmt: skip
    assert refused.returncode != 0 and "STAR_ADMIN_TOKEN" in refused.stderr + refused.stdout

"""``star search run|status|stop|resume`` and ``star frontier`` (table, JSON, plot) end to end on
a SQLite file, with analytic objectives (no training, no devices: fast)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from star.cli.main import app
from tests.conftest import ROOT
from tests.search.conftest import DEPLOY


@pytest.fixture
def lab_config(tmp_path: Path) -> Path:
    doc = {
        "data_dir": str(tmp_path / "data"),
        "database_url": f"sqlite:///{tmp_path / 'star.db'}",
        "search": {
            "name": "cli", "seed": 3, "population": 6, "generations": 2,
            "base_genome": str(ROOT / "genomes/lfm2-350m.yaml"),
            "seed_genomes": [str(ROOT / "genomes/lfm2-350m.yaml")],
            "deploy_scale": DEPLOY, "quant": "q4_0", "contexts": [64, 128],
            "objectives": ["params", "kv_bytes_per_token"],
            "budgets": [{"metric": "params", "max": 1.4}],
            "operators": {"layers": [2, 6]},
        },
    }
    path = tmp_path / "lab_config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def star(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def test_search_cli_and_frontier(lab_config: Path, tmp_path: Path) -> None:
    cfg = str(lab_config)
    r = star("frontier", "cli", "-c", cfg)
    assert r.exit_code == 1 and "star db upgrade" in r.output  # the schema is checked first
    assert star("db", "upgrade", "-c", cfg).exit_code == 0

    doc = yaml.safe_load(lab_config.read_text())
    doc["search"]["objectives"] = ["params", "ttft_ms@64/android"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    r = star("search", "run", "-c", str(bad))
    assert r.exit_code == 2
    assert "search.objectives[1]: no registered device of class 'android'" in r.output

    r = star("search", "run", "-c", cfg)
    assert r.exit_code == 0, r.output
    assert "run cli: done (2/2 generations told)" in r.output
    # the progress display's last frame: both generations told, nothing left to estimate
    bars = [line for line in r.output.splitlines() if "generations told" in line]
    assert bars and "2/2" in bars[-1] and "done" in bars[-1], r.output
    r = star("search", "run", "-c", cfg)
    assert r.exit_code == 2 and "star search resume cli" in r.output

    r = star("search", "status", "cli", "-c", cfg, "--json")
    status = json.loads(r.stdout)
    assert status["status"] == "done" and status["generations_planned"] == 2
    assert [g["told"] for g in status["generations"]] == [True, True]
    assert star("search", "status", "cli", "-c", cfg).exit_code == 0

    r = star("frontier", "cli", "-c", cfg, "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["objectives"] == ["params", "kv_bytes_per_token"]
    assert report["budgets"] == [{"metric": "params", "max": 1.4}]
    assert report["candidates"] == status["candidates"] >= 6
    front = [[p["values"][o] for o in report["objectives"]] for p in report["frontier"]]
    assert front and all(p["feasible"] for p in report["frontier"])
    assert all(p["values"]["params"] <= 1.4 for p in report["frontier"])
    # nothing feasible dominates a frontier point; each infeasible one says why
    r_all = star("frontier", "cli", "-c", cfg, "--json")
    assert json.loads(r_all.stdout) == report  # computed from rows: the same every time
    for p in report["infeasible"]:
        assert "params" in p["reason"] and "> budget 1.4" in p["reason"]
    for a in front:
        assert not any(dominates(b, a) for b in front)

    png = tmp_path / "plots" / "frontier.png"
    r = star("frontier", "cli", "-c", cfg, "--plot", str(png))
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "on the frontier" in r.output
    r = star("frontier", "cli", "-c", cfg, "--plot", str(png), "--x", "ttft_ms@64/x86")
    assert r.exit_code == 2 and "--x: 'ttft_ms@64/x86' is not an objective" in r.output

    r = star("frontier", "nope", "-c", cfg)
    assert r.exit_code == 2 and "RUN: no run named 'nope'" in r.output
    r = star("frontier", "cli", "-c", cfg, "--device", "Phone 1")
    assert r.exit_code == 2 and "--device: no device named 'Phone 1'" in r.output

    r = star("search", "stop", "cli", "-c", cfg)
    assert r.exit_code == 0 and "run cli is done" in r.output
    r = star("search", "resume", "cli", "-c", cfg)
    assert r.exit_code == 0 and "run cli: done (2/2 generations told)" in r.output


def test_eta_from_the_generations_this_process_timed() -> None:
    from star.cli.progress import eta_text

    assert eta_text([], 3) == "ETA -"  # nothing timed yet: no guess
    assert eta_text([10.0, 20.0], 4) == "ETA 1m00s"
    assert eta_text([3000.0], 2) == "ETA 1h40m"
    assert eta_text([5.0], 0) == "done"

"""``star report RUN -o FILE`` on the simulated study's database: writes one HTML file, refuses
to overwrite without ``--force``, and names the argument when the run is unknown or not a
search run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from star.cli.main import app
from star.db import repo
from star.report.model import Report
from tests.factories import migrated_database
from tests.report.conftest import Study


def star(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def lab_config(tmp_path: Path, url: str) -> str:
    path = tmp_path / "lab_config.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "database_url": url}))
    return str(path)


def test_report_cli_writes_one_file_and_keeps_an_existing_one(
        study: Study, report: Report, tmp_path: Path) -> None:
    cfg = lab_config(tmp_path, study.url)
    out = tmp_path / "out" / "report.html"
    r = star("report", study.run, "-o", str(out), "-c", cfg)
    assert r.exit_code == 0, r.output
    assert f"{len(report.front)} on the frontier, 1 baseline(s)" in r.output
    doc = out.read_text()
    assert doc.startswith("<!doctype html>") and 'class="star-report"' in doc
    assert "llama-3.2-1b" in doc and 'class="strip"' in doc
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no partial file left

    out.write_text("kept")
    r = star("report", study.run, "-o", str(out), "-c", cfg)
    assert r.exit_code == 2 and "--output:" in r.output and "--force" in r.output
    assert out.read_text() == "kept"
    assert star("report", study.run, "-o", str(out), "-c", cfg, "--force").exit_code == 0
    assert out.read_text().startswith("<!doctype html>")


def test_report_cli_names_an_unknown_run_or_one_the_search_did_not_create(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'star.db'}"
    db = migrated_database(url)
    with db.session_scope() as s:
        repo.create_run(s, name="manual", seed=0, config={})
    db.dispose()
    cfg = lab_config(tmp_path, url)
    out = tmp_path / "report.html"
    r = star("report", "nope", "-o", str(out), "-c", cfg)
    assert r.exit_code == 2 and "RUN: no run named 'nope'" in r.output
    r = star("report", "manual", "-o", str(out), "-c", cfg)
    assert r.exit_code == 2 and "RUN:" in r.output and "star search run" in r.output
    assert not out.exists()

"""`star db upgrade|current` and `star serve` refusing an out-of-date schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from star.cli.main import app
from star.db import Database, upgrade


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    monkeypatch.setenv("STAR_DATABASE_URL", url)
    monkeypatch.setenv("STAR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STAR_CONFIG", str(tmp_path / "absent.yaml"))
    return url


def test_db_current_and_upgrade(env: str) -> None:
    runner = CliRunner()
    before = runner.invoke(app, ["db", "current"])
    assert before.exit_code == 1 and "star db upgrade" in before.output
    up = runner.invoke(app, ["db", "upgrade"])
    assert up.exit_code == 0 and "None -> 0006" in up.output
    after = runner.invoke(app, ["db", "current"])
    assert after.exit_code == 0 and "up to date" in after.output


def test_serve_refuses_an_old_schema_naming_the_fix(env: str) -> None:
    upgrade(Database(env), "0001")
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 1
    assert "0001" in result.output and "star db upgrade" in result.output

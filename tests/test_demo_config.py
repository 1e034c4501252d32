"""The demo's lab config (README's first command) stays valid as the config schema evolves."""

from __future__ import annotations

from star.config import load_settings
from star.search.config import load_search_config
from tests.conftest import ROOT


def test_demo_config_validates() -> None:
    path = ROOT / "demo" / "lab_demo.yaml"
    search = load_search_config(path)
    assert search.contexts == [512, 2048] and search.generations == 3
    assert "peak_rss_mb@2048/x86" in search.objectives
    settings = load_settings(path)
    assert settings.coordinator_url.endswith(":8799")

"""The demo's lab config (README's first command) stays valid as the config schema evolves."""

from __future__ import annotations

from star.config import load_settings
from star.search.config import load_search_config
from tests.conftest import ROOT


def test_demo_config_validates_with_a_baseline_long_context_and_two_families() -> None:
    path = ROOT / "demo" / "lab_demo.yaml"
    search = load_search_config(path)
    assert search.contexts == [1024, 4096] and search.generations == 3
    assert search.confirm_contexts() == [4096]  # at least 4K context, confirmed
    assert "peak_rss_mb@4096/x86" in search.objectives
    assert [b.name for b in search.baselines] == ["llama-style-354m"]  # shows a baseline
    assert search.flash_attn == [False, True]
    from star.search.plan import plan

    families = {row.stage for row in plan(search).rows}
    assert families == {"screen", "confirm", "baselines"}
    settings = load_settings(path)
    assert settings.coordinator_url.endswith(":8799")


def test_demo_seeds_come_from_more_than_one_family() -> None:
    from star.export import check_exportable

    search = load_search_config(ROOT / "demo" / "lab_demo.yaml")
    from star.genome import load_genome

    archs = {check_exportable(search.deploy_spec(load_genome(p))).name
             for p in search.seed_genomes}
    assert {"lfm2", "qwen3"} <= archs

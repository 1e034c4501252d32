"""SearchConfig: every error names its field; checks that need the database name the device."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from star.db import Database, repo
from star.search.config import SearchConfigError, check_devices, load_search_config
from tests.conftest import GENOMES
from tests.search.conftest import search_config


def problems(**overrides: object) -> list[str]:
    with pytest.raises(SearchConfigError) as info:
        search_config(**overrides)
    return info.value.problems


def test_defaults_are_valid_and_derive_device_classes() -> None:
    cfg = search_config(objectives=["quality", "ttft_ms@64/x86", "peak_rss_mb@128/android:s24"])
    assert cfg.measured_classes() == ["x86", "android:s24"]
    assert cfg.uses_quality() and cfg.uses_devices()
    assert cfg.deploy_scale != "native" and cfg.deploy_scale.d_model == 64


def test_unknown_metric_and_operator_names_are_named() -> None:
    got = problems(objectives=["params", "latency@64/x86"],
                   operators={"token_mixers": ["shortconv", "mamba"], "crossover": "uniform"})
    assert any(p.startswith("objectives[1]: unknown metric 'latency'") for p in got), got
    assert any(p.startswith("operators.token_mixers[1]: unknown operator 'mamba'")
               for p in got), got
    assert any(p.startswith("operators.crossover:") for p in got), got
    got = problems(budgets=[{"metric": "ttft_ms", "max": 10}])
    assert got[0].startswith("budgets[0].metric: 'ttft_ms': a measured metric needs"), got
    assert problems(populaton=8)[0].startswith("populaton: Extra inputs are not permitted")
    got = problems(allowed_archs=["lfm2", "gpt2"])
    assert got[0].startswith("allowed_archs[1]: unknown llama.cpp arch 'gpt2'"), got


def test_impossible_budgets_are_refused_before_the_run() -> None:
    # the embedding alone (256 x 64 at q8_0) is ~0.02 MiB; 0.001 MiB cannot be met
    got = problems(objectives=["params"], contexts=[128],
                   budgets=[{"metric": "peak_rss_mb@128/x86", "max": 0.001},
                            {"metric": "params", "max": -1}])
    assert got[0].startswith("budgets[0].max: 0.001 is below"), got
    assert "smallest possible model" in got[0]
    assert got[1].startswith("budgets[1].max: -1 is negative"), got
    # native LFM2 width: 65,536 x 64 embedding = 4.19 M parameters at least
    got = problems(deploy_scale="native", budgets=[{"metric": "params", "max": 1.0}])
    assert got[0].startswith("budgets[0].max: 1 is below 4.19"), got
    got = problems(objectives=["ttft_ms@4096/x86"])
    assert got == ["objectives[0]: context 4096 is not in contexts [64, 128] "
                   "(no job would measure it)"]
    got = problems(objectives=["quality"], proxy={"tasks": ["memorization"]})
    assert got[0].startswith("proxy.tasks: the quality objective needs"), got


def test_measured_objective_needs_a_live_device_of_its_class(db: Database) -> None:
    cfg = search_config(objectives=["params", "ttft_ms@64/x86", "decode_ms@128/android"],
                        budgets=[{"metric": "peak_rss_mb@128/x86:big", "max": 100}])
    with db.session_scope() as s:
        repo.create_device(s, name="lap", kind="x86")
        repo.create_device(s, name="old-phone", kind="android")
        repo.retire_device(s, name="old-phone")
    with db.session_scope() as s, pytest.raises(SearchConfigError) as info:
        check_devices(cfg, s)
    assert info.value.problems == [
        "objectives[2]: no registered device of class 'android'",
        "budgets[0].metric: no registered device of class 'x86:big'",
    ]
    with db.session_scope() as s:
        repo.create_device(s, name="phone", kind="android", tags=["s24"])
        repo.create_device(s, name="big", kind="x86", tags=["big", "avx512"])
    with db.session_scope() as s:
        check_devices(cfg, s)  # no error now


def test_yaml_section_relative_paths_and_shared_proxy_section(tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "base.yaml").write_text((GENOMES / "lfm2-350m.yaml").read_text())
    doc = {
        "database_url": "sqlite:///x.db",  # other sections of lab_config.yaml are ignored
        "proxy": {"tasks": ["compression"], "steps": 3},
        "search": {"name": "from-file", "base_genome": "g/base.yaml", "objectives": ["quality"]},
    }
    path = tmp_path / "lab_config.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = load_search_config(path, name="renamed")
    assert cfg.name == "renamed" and cfg.base_genome == tmp_path / "g" / "base.yaml"
    assert cfg.proxy.tasks == ("compression",) and cfg.proxy.steps == 3
    doc["search"]["seed_genomes"] = ["g/missing.yaml"]
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SearchConfigError) as info:
        load_search_config(path)
    assert info.value.problems[0].startswith("seed_genomes[0]: ")
    assert "does not exist" in info.value.problems[0]


def test_runtime_executorch_opens_the_space_and_refuses_llama_cpp_settings() -> None:
    """runtime executorch: a linear-attention seed (no llama.cpp arch runs it) is accepted,
    flash attention is one setting (off), and the llama.cpp fences are errors naming the field."""
    linear = str(GENOMES / "hybrid-linear-attn-350m.yaml")
    cfg = search_config(runtime="executorch", seed_genomes=[linear])
    assert cfg.flash_attn == [False] and cfg.artifact_quant == "8da4w"
    assert cfg.cost_quant.value == "q4_0" and cfg.pte_max_context() == max(cfg.contexts) + 4
    with pytest.raises(SearchConfigError, match="seed_genomes.*cannot be exported to stock"):
        search_config(seed_genomes=[linear])  # the llama.cpp runtime refuses it, naming it
    with pytest.raises(SearchConfigError, match=r"^flash_attn: \[False, True\] is a llama.cpp"):
        search_config(runtime="executorch", seed_genomes=[linear], flash_attn=[False, True])
    with pytest.raises(SearchConfigError, match="^allowed_archs: fences"):
        search_config(runtime="executorch", allowed_archs=["lfm2"])
    with pytest.raises(SearchConfigError, match="pte_quant"):
        search_config(runtime="executorch", pte_quant="q4_0")

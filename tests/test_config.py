"""lab_config.yaml: a typo'd key anywhere is refused in one line naming the file, the field and
the closest known setting; the sections other readers own (search, proxy) are left to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from star.config import ConfigError, load_settings


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "expected"), [
    ("coordnator: {port: 1}\n", "coordnator: unknown setting; did you mean 'coordinator'?"),
    ("coordinator: {prot: 1}\n", "coordinator.prot: unknown setting; did you mean 'port'?"),
    ("agent: {quiet_timout_s: 5}\n",
     "agent.quiet_timout_s: unknown setting; did you mean 'quiet_timeout_s'?"),
    ("measurement: {threads: 4}\n", "measurement: unknown setting"),
])
def test_a_typo_anywhere_is_refused_with_the_closest_setting(tmp_path: Path, text: str,
                                                              expected: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value) == f"{path}: {expected}" or str(err.value).startswith(
        f"{path}: {expected}")
    assert "\n" not in str(err.value)


def test_sections_of_other_readers_and_real_settings_are_accepted(tmp_path: Path) -> None:
    path = _file(tmp_path, "data_dir: d\ncoordinator: {port: 9001}\nagent: {threads: 2}\n"
                           "search: {name: anything}\nproxy: {steps: 3}\n")
    settings = load_settings(path)
    assert settings.coordinator.port == 9001 and settings.agent.threads == 2


def test_the_shipped_configs_load() -> None:
    root = Path(__file__).resolve().parents[1]
    for name in ("lab_config.yaml", "demo/lab_demo.yaml", "studies/lfm2-vs-transformer.yaml"):
        load_settings(root / name)

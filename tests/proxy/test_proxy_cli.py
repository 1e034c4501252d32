"""``star proxy train``: real subprocess runs, as a user types them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import GENOMES, ROOT


def star(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STAR_CACHE_DIR": str(cache), "HOME": str(cache)}
    return subprocess.run([sys.executable, "-m", "star.cli", "proxy", "train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, env=env)


def test_train_json(tmp_path: Path, cache_dir: Path) -> None:
    config = tmp_path / "lab_config.yaml"
    config.write_text("proxy:\n  batch_size: 4\n  eval_batch_size: 32\n"
                      "  text:\n    seq_len: 32\n    max_val_windows: 4\n")
    r = star(str(GENOMES / "lfm2-350m.yaml"), "--quick", "--task", "memorization",
             "--task", "text", "--steps", "2", "--scale", "0.02", "--text-bytes", "65536",
             "--seed", "1", "--config", str(config), "--weights", str(tmp_path / "w.pt"),
             "--json", cache=cache_dir)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["name"] == "lfm2-350m" and doc["seed"] == 1 and doc["error"] is None
    assert set(doc["tasks"]) == {"memorization"} and doc["tasks"]["memorization"]["steps"] == 2
    assert doc["text"]["seq_len"] == 32 and doc["text"]["vocab_size"] == 256
    assert doc["text"]["tokenizer_path"].startswith(str(cache_dir))
    assert doc["weights_task"] == "text" and (tmp_path / "w.pt").is_file()


def test_bad_task_is_a_clean_error(cache_dir: Path) -> None:
    r = star(str(GENOMES / "lfm2-350m.yaml"), "--task", "recall", cache=cache_dir)
    assert r.returncode == 2
    assert "proxy.tasks" in r.stderr and "Traceback" not in r.stderr

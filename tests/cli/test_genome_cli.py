"""``star genome``: real subprocess runs, as a user types them."""

from __future__ import annotations

import json
import subprocess
import sys

from star.genome import load_genome
from tests.conftest import GENOMES, ROOT


def star(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "star.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_stats_json_seed_figures() -> None:
    r = star("genome", "stats", str(GENOMES / "lfm2-1.2b.yaml"), "--json",
             "--cache-bytes-per-element", "1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["params"] == 1_170_340_608
    assert doc["active_params"] == 1_170_340_608
    assert doc["kv_bytes_per_token"] == 6144
    assert doc["state_bytes"] == 10 * 2048 * 2 * 4
    assert set(doc["weight_bytes"]) == {"f32", "f16", "q8_0", "q4_0"}
    r = star("genome", "stats", str(GENOMES / "llama-3.2-1b.yaml"), "--json",
             "--cache-bytes-per-element", "1")
    assert json.loads(r.stdout)["kv_bytes_per_token"] == 16384
    r = star("genome", "stats", str(GENOMES / "llama-3.2-1b.yaml"), "--json")
    assert json.loads(r.stdout)["kv_bytes_per_token"] == 32768  # default: 2 bytes (f16)


def test_stats_table_for_every_reference() -> None:
    files = sorted(str(p) for p in GENOMES.glob("*.yaml"))
    r = star("genome", "stats", *files)
    assert r.returncode == 0, r.stderr
    assert "354,483,968" in r.stdout and "8,339,930,560" in r.stdout


def test_validate_reports_field_and_exits_nonzero(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (GENOMES / "lfm2-350m.yaml").read_text().replace("kv_heads: 8", "kv_heads: 5")
    bad.write_text(text)
    r = star("genome", "validate", str(bad), str(GENOMES / "lfm2-350m.yaml"))
    assert r.returncode == 1
    assert "operators.attn.featurizer.kv_heads: 5 KV heads must divide 16 heads" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert "ok" in r.stdout


def test_user_errors_have_no_traceback(tmp_path) -> None:
    r = star("genome", "stats", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "missing.yaml" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {d_model: 1000}\noperators: {}\nbackbone: {layers: []}\n")
    r = star("genome", "stats", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "model.d_model: 1000 must be a multiple of 64" in r.stderr
    assert "backbone.layers: must be a non-empty list" in r.stderr
    r = star("genome", "mutate", str(GENOMES / "lfm2-350m.yaml"), "--resolution", "everything")
    assert r.returncode == 2 and "--resolution" in r.stderr


def test_random_and_mutate_give_valid_genomes(tmp_path) -> None:
    out = tmp_path / "r.yaml"
    r = star("genome", "random", "--seed", "5", "--like", str(GENOMES / "lfm2-350m.yaml"),
             "-o", str(out))
    assert r.returncode == 0, r.stderr
    g = load_genome(out)
    assert g.to_spec().vocab_size == 65536
    m = tmp_path / "m.yaml"
    r = star("genome", "mutate", str(out), "--seed", "1", "--n", "5", "-o", str(m))
    assert r.returncode == 0, r.stderr
    assert load_genome(m).genome_id != g.genome_id
    r2 = star("genome", "mutate", str(out), "--seed", "1", "--n", "5")
    assert r2.stdout == m.read_text()  # same seed, same child

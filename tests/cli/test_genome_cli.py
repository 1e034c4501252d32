"""``star genome``: real subprocess runs, as a user types them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
    # every type the exporter offers for this genome, priced by the same per-tensor rules
    assert {"f32", "f16", "q8_0", "q4_0", "q4_k_m", "q6_k"} <= set(doc["weight_bytes"])
    assert doc["weight_bytes"]["q4_k_m"] > doc["weight_bytes"]["q4_0"]
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


def exports_as(path) -> str | None:  # noqa: ANN001
    from star.export import UnsupportedGenome, check_exportable

    try:
        return check_exportable(load_genome(path).to_spec()).name
    except UnsupportedGenome:
        return None


def test_random_and_mutate_export_by_default_and_raw_does_not(tmp_path) -> None:
    randoms = []
    for seed in range(5):  # before cross-family fitting, 5 of 5 of these were refused
        out = tmp_path / f"r{seed}.yaml"
        r = star("genome", "random", "--seed", str(seed), "-o", str(out))
        assert r.returncode == 0, r.stderr
        arch = exports_as(out)
        assert arch is not None and f"# llama.cpp arch: {arch}" in out.read_text()
        randoms.append(arch)
    assert len(set(randoms)) >= 3  # random genomes land in several families
    for seed in range(8):  # before: 7 of 8 refused
        out = tmp_path / f"m{seed}.yaml"
        r = star("genome", "mutate", str(GENOMES / "lfm2-350m.yaml"), "--seed", str(seed),
                 "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert exports_as(out) is not None
        assert load_genome(out).genome_id != load_genome(GENOMES / "lfm2-350m.yaml").genome_id
    raw = [star("genome", "random", "--seed", str(seed), "--raw").stdout for seed in range(5)]
    assert sum("llama.cpp arch: none" in text for text in raw) >= 4


@pytest.mark.slow
def test_star_export_writes_a_default_random_genome_and_mutant(tmp_path) -> None:
    """The real exporter (proxy scale: small files), not only check_exportable."""
    for args in (("random", "--seed", "0"), ("mutate", str(GENOMES / "lfm2-350m.yaml"),
                                              "--seed", "3")):
        genome = tmp_path / f"{args[0]}.yaml"
        r = star("genome", *args, "-o", str(genome))
        assert r.returncode == 0, r.stderr
        gguf = tmp_path / f"{args[0]}.gguf"
        r = star("export", str(genome), "--scale", "proxy", "-o", str(gguf), "--quant", "f16")
        assert r.returncode == 0, r.stderr
        arch = exports_as(genome)
        assert arch is not None and arch in r.stdout and gguf.stat().st_size > 0


def test_arch_options_restrict_the_family(tmp_path) -> None:
    for seed in range(3):
        r = star("genome", "random", "--seed", str(seed), "--arch", "mamba2", "--arch",
                 "granitehybrid")
        assert r.returncode == 0, r.stderr
        (tmp_path / "g.yaml").write_text(r.stdout)
        assert exports_as(tmp_path / "g.yaml") in ("mamba2", "granitehybrid")
        r = star("genome", "mutate", str(GENOMES / "hybrid-ssm-attn-300m.yaml"), "--seed",
                 str(seed), "--n", "3", "--keep-arch")
        assert r.returncode == 0, r.stderr
        (tmp_path / "m.yaml").write_text(r.stdout)
        assert exports_as(tmp_path / "m.yaml") == "granitehybrid"
    r = star("genome", "random", "--arch", "lfm3")
    assert r.returncode == 2 and "--arch: unknown llama.cpp arch 'lfm3'" in r.stderr
    r = star("genome", "mutate", str(GENOMES / "hybrid-linear-attn-350m.yaml"), "--keep-arch")
    assert r.returncode == 2 and "--keep-arch" in r.stderr and "does not export" in r.stderr


def test_validate_says_which_arch_or_why_not(tmp_path) -> None:
    linear = GENOMES / "hybrid-linear-attn-350m.yaml"
    r = star("genome", "validate", str(GENOMES / "lfm2-350m.yaml"), str(linear),
             str(GENOMES / "mamba2-370m.yaml"))
    assert r.returncode == 0, r.stdout
    lines = r.stdout.splitlines()
    assert "exports: llama.cpp arch lfm2" in lines[0]
    assert "does not export: layer 0 (linear_attention)" in lines[1]
    assert "nearest exportable: qwen3" in lines[1]
    assert "exports: llama.cpp arch mamba2" in lines[2]
    r = star("genome", "validate", "--require-export", str(linear))
    assert r.returncode == 1
    out = tmp_path / "fitted.yaml"
    r = star("genome", "fit", str(linear), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert exports_as(out) == "qwen3" and "fitted to llama.cpp arch qwen3" in out.read_text()


def test_match_gives_an_exportable_llama_of_lfm2_350m_size(tmp_path) -> None:
    out = tmp_path / "llama-like-lfm2.yaml"
    r = star("genome", "match", str(GENOMES / "llama-3.2-1b.yaml"), "--params-like",
             str(GENOMES / "lfm2-350m.yaml"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "matched" in r.stdout and "354,483,968" in r.stdout  # the table: REF's count
    text = out.read_text()
    assert text.startswith("# Size-matched baseline") and "Provenance:" in text
    assert "KV cache:" in text and "Exports as llama.cpp arch llama (checked)" in text
    spec = load_genome(out).to_spec()
    from star.cost import count_params

    assert abs(count_params(spec).params - 354_483_968) <= 0.02 * 354_483_968
    assert exports_as(out) == "llama" and spec.vocab_size == 65536
    r = star("genome", "match", str(GENOMES / "llama-3.2-1b.yaml"), "--params-like",
             str(GENOMES / "lfm2-350m.yaml"), "--keep-embedding")
    assert r.returncode == 0, r.stderr
    assert "vocab_size: 128256" in r.stdout and "matched" in r.stderr  # table on stderr
    r = star("genome", "match", str(GENOMES / "llama-3.2-1b.yaml"), "--params-like",
             str(GENOMES / "lfm2-350m.yaml"), "--tolerance", "0")
    assert r.returncode == 2 and "--params-like" in r.stderr and "tolerance" in r.stderr
    r = star("genome", "match", str(GENOMES / "hybrid-linear-attn-350m.yaml"),
             "--params-like", str(GENOMES / "lfm2-350m.yaml"))
    assert r.returncode == 2 and "does not export" in r.stderr

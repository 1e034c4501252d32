"""``star export`` and ``star runtimes``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from star.cli.main import app
from star.genome import PROXY, load_genome, scale_spec
from star.nn import StarModel
from tests.conftest import GENOMES

runner = CliRunner()
LFM2 = GENOMES / "lfm2-350m.yaml"
LINEAR = GENOMES / "hybrid-linear-attn-350m.yaml"


def test_runtimes_lists_every_target() -> None:
    result = runner.invoke(app, ["runtimes", "--json"])
    assert result.exit_code == 0, result.output
    names = [t["name"] for t in json.loads(result.stdout)]
    assert names == ["lfm2", "lfm2moe", "qwen3", "llama", "mamba2", "granitehybrid", "nemotron_h"]
    table = runner.invoke(app, ["runtimes"])
    assert table.exit_code == 0 and "granitehybrid" in table.stdout


def test_export_proxy_with_random_weights(tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    result = runner.invoke(
        app,
        [
            "export",
            str(LFM2),
            "-o",
            str(out),
            "--scale",
            "proxy",
            "--quant",
            "q8_0",
            "--random-seed",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["arch"] == "lfm2" and info["quant"] == "q8_0" and info["scale"] == "proxy"
    assert info["weights"] == "random (seed 3)"
    assert out.stat().st_size == info["size_bytes"]


def test_export_from_checkpoint(tmp_path: Path) -> None:
    spec = scale_spec(load_genome(LFM2).to_spec(), PROXY)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": StarModel(spec, device="cpu", seed=5).state_dict(), "step": 7}, ckpt)
    out = tmp_path / "m.gguf"
    result = runner.invoke(
        app,
        ["export", str(LFM2), "-o", str(out), "--scale", "proxy", "--weights", str(ckpt), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["weights"] == str(ckpt)
    # the deploy-scale spec does not fit proxy-scale weights: caught before writing
    bad = runner.invoke(
        app, ["export", str(LFM2), "-o", str(tmp_path / "bad.gguf"), "--weights", str(ckpt)]
    )
    assert bad.exit_code == 2
    assert "export failed" in bad.output
    assert not (tmp_path / "bad.gguf").exists()


def test_unsupported_genome_fails_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    result = runner.invoke(app, ["export", str(LINEAR), "-o", str(out), "--scale", "proxy"])
    assert result.exit_code == 2
    assert "linear_attention" in result.output and "layer 0" in result.output
    assert not out.exists()


def test_export_argument_errors(tmp_path: Path) -> None:
    genome = str(LFM2)
    both = runner.invoke(
        app,
        [
            "export",
            genome,
            "-o",
            str(tmp_path / "m.gguf"),
            "--weights",
            "x.pt",
            "--random-seed",
            "1",
        ],
    )
    assert both.exit_code == 2
    no_out = runner.invoke(app, ["export", genome])
    assert no_out.exit_code == 2


def test_export_q4_k_m_through_llama_quantize(tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    result = runner.invoke(
        app,
        ["export", str(LFM2), "-o", str(out), "--scale", "proxy", "--quant", "Q4_K_M", "--json"],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["quant"] == "q4_k_m" and info["quantized_by"].startswith("llama-quantize")
    assert info["type_counts"]["Q8_0"] >= 1  # the tied head (Q6_K falls back: rows of 128)
    assert out.stat().st_size == info["size_bytes"]
    assert not list(tmp_path.glob("*.partial"))


def test_bad_quant_names_the_choices(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export", str(LFM2), "-o", str(tmp_path / "m.gguf"), "--quant", "q5_k"]
    )
    assert result.exit_code == 2
    assert "q5_k" in result.output and "q5_k_m" in result.output and "q4_k_m" in result.output
    assert not (tmp_path / "m.gguf").exists()

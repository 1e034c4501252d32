"""A genome no llama.cpp architecture runs -> .pte -> the C++ runner -> torch's logits; and
``star bench`` on it gives a valid BenchReport.

One export for the module (lowering takes minutes on a busy 2-core machine): the genome in
data/ mixes short conv, Mamba-2 + MoE, linear attention, GQA attention and sliding-window
attention; its weights are redrawn so that every operator moves the logits.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from device_agents.executorch import PteBenchSettings, profile_paths, run_pte_bench
from device_agents.llamacpp.local import file_sha256
from device_agents.schemas import BenchReport
from star.cli.main import app
from star.export.executorch import PteOptions, export_pte, schedule
from star.genome import load_genome
from star.nn import StarModel
from star.runtime.executorch import RunnerInfo
from tests.executorch.specs import MIXED, model_of, random_tokens

pytestmark = pytest.mark.slow

GENOME = Path(__file__).parent / "data" / "mixed-all-operators.yaml"
MAX_CONTEXT = 96
CHUNK = 8
cli = CliRunner()


@dataclass(frozen=True)
class Exported:
    path: Path
    result: dict
    model: StarModel


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """`star export --runtime executorch --weights` of the mixed genome (fp32)."""
    tmp = tmp_path_factory.mktemp("pte")
    model = model_of(load_genome(GENOME).to_spec(), seed=3)
    weights = tmp / "weights.pt"
    torch.save(model.state_dict(), weights)
    path = tmp / "mixed.pte"
    result = cli.invoke(app, [
        "export", str(GENOME), "--runtime", "executorch", "--weights", str(weights),
        "--max-context", str(MAX_CONTEXT), "--prefill-chunk", str(CHUNK), "-o", str(path),
        "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return Exported(path=path, result=json.loads(result.stdout), model=model)


def test_export_reads_back_with_both_methods(exported: Exported) -> None:
    r = exported.result
    assert set(r["methods"]) == {"prefill", "decode", "max_context", "prefill_chunk",
                                 "vocab_size", "star_pte_format"}
    assert (r["max_context"], r["prefill_chunk"], r["quant"]) == (MAX_CONTEXT, CHUNK, "fp32")
    assert r["max_abs_error"] < 1e-4 * r["logits_scale"]
    assert r["sha256"] == file_sha256(exported.path)


def test_runner_logits_match_torch(exported: Exported, et_runner: RunnerInfo,
                                   tmp_path: Path) -> None:
    """90 tokens: 11 prefill chunks and 2 decode steps; the SWA ring (71 slots) wraps."""
    n = 90
    tokens = random_tokens(n, exported.model.spec.vocab_size, seed=5)
    out = tmp_path / "logits.bin"
    proc = subprocess.run(
        [str(et_runner.runner), str(exported.path), "eval", "--tokens",
         ",".join(map(str, tokens)), "--logits-out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    calls = schedule(n, CHUNK)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["calls"] == len(calls)
    vocab = exported.model.spec.vocab_size
    got = np.fromfile(out, dtype=np.float32).reshape(len(calls), vocab)
    with torch.no_grad():
        full = exported.model(torch.tensor([tokens]))[0].numpy()
    expected = full[[start + size - 1 for start, size in calls]]
    error = float(np.abs(got - expected).max())
    assert error < 1e-4 * float(np.abs(expected).max()), error


def test_star_bench_on_a_pte_gives_a_valid_bench_report(exported: Exported) -> None:
    result = cli.invoke(app, [
        "bench", str(exported.path), "--contexts", "16,40", "--repeats", "2", "--n-gen", "4",
        "--threads", "1", "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = BenchReport.model_validate_json(result.stdout)
    assert report.model_sha256 == file_sha256(exported.path)
    rt = report.runtime
    assert (rt.runtime, rt.delegate, rt.llama_cpp_commit) == ("executorch", "xnnpack", "")
    assert rt.runtime_version is not None and rt.runtime_version.startswith("1.5.1")
    assert [c.context for c in report.contexts] == [16, 40]
    for c in report.contexts:
        assert c.error is None and not c.oom
        assert c.ttft_ms is not None and len(c.ttft_ms.samples) == 2 and c.ttft_ms.median > 0
        assert c.decode_ms_per_token is not None and c.decode_ms_per_token.median > 0
        assert c.peak_rss_bytes is not None and c.peak_rss_bytes > 1 << 20


def test_star_bench_refuses_a_context_beyond_max_context(exported: Exported) -> None:
    result = cli.invoke(app, ["bench", str(exported.path), "--contexts", "90", "--n-gen", "8"])
    assert result.exit_code == 2
    assert f"exceeds the program's max_context {MAX_CONTEXT}" in result.output


def test_profiles_are_kept_when_asked(exported: Exported, et_runner: RunnerInfo,
                                      tmp_path: Path) -> None:
    settings = PteBenchSettings(threads=1, n_gen=2, repetitions=1, warmup=0)
    report = run_pte_bench(exported.path, [16], settings, et_runner.runner, profile_dir=tmp_path)
    assert report.contexts[0].error is None
    for profile in profile_paths(tmp_path, exported.path, 16):
        assert profile.stat().st_size > 100


def test_runner_refuses_a_program_without_star_methods(et_runner: RunnerInfo,
                                                       tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pte"
    bogus.write_bytes(bytes(4) + b"ET12" + bytes(200))
    proc = subprocess.run([str(et_runner.runner), str(bogus), "info"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "not an ExecuTorch program" in proc.stderr


def test_8da4w_program_reads_back_and_is_smaller(exported: Exported, tmp_path: Path) -> None:
    model = model_of(MIXED, seed=1)
    options = PteOptions.for_spec(MIXED, quant="8da4w", max_context=64, prefill_chunk=CHUNK)
    result = export_pte(model, tmp_path / "q.pte", options)
    assert result.quant == "8da4w"
    assert result.quant_error is not None and result.quant_error > 0
    assert result.max_abs_error < max(5e-2 * result.logits_scale, 0.5 * result.quant_error)
    fp32 = model_of(MIXED, seed=1)
    assert all(p.dtype == torch.float32 for p in fp32.parameters())  # source left untouched
    assert result.size_bytes < exported.path.stat().st_size

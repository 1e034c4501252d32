"""``star bench`` and the local runner against the real pinned llama-bench on a tiny GGUF."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from device_agents.llamacpp.commands import BenchSettings
from device_agents.llamacpp.flags import parse_help
from device_agents.llamacpp.local import detect_flags, run_local_bench, run_process
from device_agents.schemas import BenchReport
from star.cli import bench as bench_cli
from star.runtime import RuntimeInfo
from tests.runtime.tiny_gguf import TinyConfig, write_tiny_gguf

CONFIG = TinyConfig(context_length=65536)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """13 MiB of F32 weights, 2 KiB of F16 KV per token; context_length 65536."""
    return write_tiny_gguf(tmp_path_factory.mktemp("bench") / "tiny.gguf", CONFIG)


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    bench_cli.register(app)
    return app


def test_flag_detector_on_the_real_help(runtime: RuntimeInfo) -> None:
    proc = subprocess.run([str(runtime.llama_bench), "--help"], capture_output=True, text=True,
                          timeout=60)
    flags = parse_help(proc.stdout + proc.stderr)
    # this build: -fa on|off|auto, --load-mode instead of -mmp
    assert flags.flash_attn_args(False) == ["-fa", "off"]
    assert flags.mmap_args(False) == ["-lm", "none"]
    assert flags.cache_type_args("f16", "q8_0") == ["-ctk", "f16", "-ctv", "q8_0"]
    assert flags.cpu_mask_args("0x3") == ["-C", "0x3"]
    assert flags.depth_args(256) == ["-d", "256"] and flags.verbose == "-v"
    assert flags.n_gpu_layers == "-ngl"
    assert detect_flags(runtime.llama_bench) == flags


def test_star_bench_json(runtime: RuntimeInfo, model: Path) -> None:
    result = CliRunner().invoke(_cli(), [
        "bench", str(model), "--contexts", "128,256", "--repeats", "2", "--threads", "2",
        "--n-gen", "8", "--flash-attn", "off", "--cache-type", "f16", "--json",
    ])
    assert result.exit_code == 0, result.output
    report = BenchReport.model_validate_json(result.stdout)
    assert report.model_bytes == model.stat().st_size
    rt = report.runtime
    assert rt.llama_cpp_commit == runtime.commit  # as llama-bench itself reports it
    assert rt.build_flags == list(runtime.build_flags)
    assert (rt.threads, rt.n_gen, rt.repetitions, rt.flash_attn, rt.mmap) == (2, 8, 2, False, False)
    assert (rt.cache_type_k, rt.cache_type_v) == ("f16", "f16") and rt.cpu_model
    assert [c.context for c in report.contexts] == [128, 256]
    for c in report.contexts:
        assert not c.oom and c.error is None
        assert c.ttft_ms is not None and c.decode_ms_per_token is not None
        assert len(c.ttft_ms.samples) == 2 and len(c.decode_ms_per_token.samples) == 2
        assert c.ttft_ms.median > 0 and c.decode_ms_per_token.median > 0
        # weights are read into memory (mmap off), so the process holds at least the file
        assert c.peak_rss_bytes is not None and c.peak_rss_bytes > report.model_bytes


def test_star_bench_table(runtime: RuntimeInfo, model: Path) -> None:
    result = CliRunner().invoke(_cli(), [
        "bench", str(model), "--contexts", "64", "--repeats", "1", "--threads", "1",
        "--n-gen", "4", "--flash-attn", "on", "--cache-type", "q8_0",
    ])
    assert result.exit_code == 0, result.output
    assert "TTFT" in result.stdout and "flash-attn on" in result.stdout
    assert "KV q8_0/q8_0" in result.stdout


def test_peak_rss_grows_with_context(runtime: RuntimeInfo, model: Path) -> None:
    settings = BenchSettings(threads=2, n_gen=4, repetitions=1)
    report = run_local_bench(model, [256, 2048], settings, runtime.llama_bench)
    small, large = report.contexts
    assert small.peak_rss_bytes and large.peak_rss_bytes
    # at least the KV cache difference (compute buffers grow too)
    kv_growth = (2048 - 256) * CONFIG.kv_bytes_per_token(2)
    assert large.peak_rss_bytes - small.peak_rss_bytes >= kv_growth


def test_out_of_memory_is_oom_not_error(runtime: RuntimeInfo, model: Path) -> None:
    """Under RLIMIT_AS = 256 MiB a 256-token context fits; 32K tokens need ~0.5 GiB of compute
    buffers and KV. llama.cpp then fails to allocate (a message, not a kill): classified oom."""
    settings = BenchSettings(threads=2, n_gen=4, repetitions=1)
    report = run_local_bench(model, [256, 32768], settings, runtime.llama_bench,
                             memory_limit_bytes=256 * 2**20)
    fits, too_big = report.contexts
    assert not fits.oom and fits.error is None and fits.peak_rss_bytes
    assert too_big.oom and too_big.error is None
    assert too_big.ttft_ms is None and too_big.peak_rss_bytes is None


def test_timeout_is_an_error(runtime: RuntimeInfo, model: Path) -> None:
    settings = BenchSettings(threads=1, n_gen=4, repetitions=1)
    report = run_local_bench(model, [4096], settings, runtime.llama_bench, timeout_s=0.05)
    (only,) = report.contexts
    assert not only.oom and only.error is not None and "timed out" in only.error


def test_rss_is_the_child_not_the_parent() -> None:
    """A parent that once held 300 MB must not leak into the child's figure (see local.py)."""
    ballast = bytearray(300 * 2**20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    outcome = run_process(["/bin/true"])
    del ballast
    assert outcome.returncode == 0
    assert outcome.peak_rss_bytes is not None and outcome.peak_rss_bytes < 50 * 2**20


def test_a_crash_is_an_error(tmp_path: Path) -> None:
    outcome = run_process(["/bin/sh", "-c", "echo boom >&2; kill -SEGV $$"])
    assert outcome.returncode == -11 and "boom" in outcome.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "model file not found"),
        (["{text}"], "not a GGUF file"),
        (["{model}", "--contexts", "100000"], "exceeds the model's context_length 65536"),
        (["{model}", "--contexts", "65530"], "65530 + 32 generated exceeds"),
        (["{model}", "--contexts", "4k,x"], "'x' is not a positive integer"),
        (["{model}", "--flash-attn", "auto"], "--flash-attn must be on or off"),
        (["{model}", "--cache-type", "f8"], "--cache-type 'f8' is not one of"),
        (["{model}", "--repeats", "0"], "at least 1"),
    ],
)
def test_cli_input_errors(model: Path, tmp_path: Path, args: list[str], message: str) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    paths = {"missing": tmp_path / "nope.gguf", "text": text, "model": model}
    argv = ["bench", *[a.format(**paths) for a in args]]
    result = CliRunner().invoke(_cli(), argv)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.output and not result.stdout


def test_report_round_trips(runtime: RuntimeInfo, model: Path) -> None:
    settings = BenchSettings(threads=1, n_gen=2, repetitions=1, cpu_mask="0x1")
    report = run_local_bench(model, [32], settings, runtime.llama_bench,
                             build_flags=runtime.build_flags)
    assert report.runtime.cpu_mask == "0x1"
    again = BenchReport.model_validate(json.loads(report.model_dump_json()))
    assert again == report

"""``star runtime build --target android-arm64``: a static aarch64 llama-bench from the pinned
source, cached, reporting the pinned commit, and running (under qemu-aarch64) on a tiny GGUF."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from device_agents.llamacpp.results import parse_llama_bench_json
from star.cli import runtime as runtime_cli
from star.runtime import RuntimeBuildError, RuntimeInfo
from star.runtime.build import LLAMA_CPP_COMMIT
from star.runtime.cross import (
    PhoneRuntime,
    check_aarch64_static,
    cross_build_dir,
    ensure_phone_runtime,
    read_phone_marker,
)
from tests.support.qemu_binfmt import qemu_aarch64


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    runtime_cli.register(app)
    return app


def test_phone_build_is_cached_static_aarch64_at_the_pinned_commit(
    phone_runtime: PhoneRuntime,
) -> None:
    started = time.monotonic()
    assert ensure_phone_runtime() == phone_runtime  # the cache, not a rebuild
    assert time.monotonic() - started < 1.0
    check_aarch64_static(phone_runtime.llama_bench)
    assert phone_runtime.commit == LLAMA_CPP_COMMIT
    assert phone_runtime.arch == "armv8.2-a+dotprod"
    flags = phone_runtime.build_flags
    assert "-DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod" in flags
    assert "-DCMAKE_EXE_LINKER_FLAGS=-static" in flags and "-DGGML_NATIVE=OFF" in flags


def test_host_binary_is_not_a_phone_binary(runtime: RuntimeInfo) -> None:
    with pytest.raises(RuntimeBuildError, match="not aarch64"):
        check_aarch64_static(runtime.llama_bench)


def test_each_isa_level_has_its_own_cache_entry() -> None:
    assert cross_build_dir("android-arm64") != cross_build_dir("android-arm64-compat")
    assert "android-arm64-compat" in cross_build_dir("android-arm64-compat").name
    with pytest.raises(RuntimeBuildError, match="unknown target"):
        cross_build_dir("android-x86")


def test_phone_binary_runs_under_qemu_and_reports_the_commit(
    phone_runtime: PhoneRuntime, tiny_gguf: Path
) -> None:
    qemu = qemu_aarch64()
    assert qemu is not None, "apt-get install -y qemu-user (scripts/setup.sh does)"
    version = subprocess.run([qemu, str(phone_runtime.llama_bench), "--version"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert f"commit {LLAMA_CPP_COMMIT})" in version.stderr and "aarch64" in version.stderr
    bench = subprocess.run(
        [qemu, str(phone_runtime.llama_bench), "-m", str(tiny_gguf), "-p", "32", "-n", "0",
         "-r", "2", "-t", "1", "-o", "json"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr[-2000:]
    (result,) = parse_llama_bench_json(bench.stdout)
    assert (result.n_prompt, result.n_gen, result.build_commit) == (32, 0, LLAMA_CPP_COMMIT)
    assert len(result.samples_ns) == 2 and min(result.samples_ns) > 0


def test_runtime_info_for_the_phone_target(phone_runtime: PhoneRuntime) -> None:
    result = CliRunner().invoke(_cli(), ["runtime", "info", "--target", "android-arm64",
                                         "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["llama_bench"] == str(phone_runtime.llama_bench)
    assert data["commit"] == LLAMA_CPP_COMMIT and data["target"] == "android-arm64"
    bad = CliRunner().invoke(_cli(), ["runtime", "build", "--target", "ios"])
    assert bad.exit_code == 2 and "android-arm64-compat" in bad.stderr


def test_phone_runtime_info_without_a_build(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv("STAR_CACHE_DIR", str(tmp_path))
    assert read_phone_marker() is None
    result = CliRunner().invoke(_cli(), ["runtime", "info", "--target", "android-arm64"])
    assert result.exit_code == 1
    assert "star runtime build --target android-arm64" in result.stderr

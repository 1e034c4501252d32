"""The pinned llama.cpp build: idempotent, concurrency-safe, recorded, reported by the CLI."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from star.cli import runtime as runtime_cli
from star.runtime import RuntimeInfo, build, ensure_runtime
from star.runtime.build import BUILD_FLAGS, vendored_commit
from tests.support.wait import wait_for


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # keeps "runtime" a sub-command even when it is the only one
        pass

    runtime_cli.register(app)
    return app


def test_ensure_runtime_is_idempotent(runtime: RuntimeInfo) -> None:
    started = time.monotonic()
    again = ensure_runtime()
    assert time.monotonic() - started < 1.0
    assert again == runtime
    assert (runtime.root / "runtime.json").is_file()
    for binary in (runtime.llama_bench, runtime.llama_quantize):
        assert binary.is_file()
    assert (runtime.lib_dir / "libllama.so").is_file()
    assert "-DGGML_NATIVE=ON" in runtime.build_flags and "-DBUILD_SHARED_LIBS=ON" in BUILD_FLAGS


def test_binaries_report_the_recorded_commit(runtime: RuntimeInfo) -> None:
    assert runtime.commit not in ("", "unknown")
    assert runtime.llama_completion is not None
    proc = subprocess.run([str(runtime.llama_completion), "--version"], capture_output=True,
                          text=True, timeout=60)
    assert f"commit {runtime.commit})" in proc.stdout + proc.stderr


def test_info_json_has_the_stable_keys(runtime: RuntimeInfo) -> None:
    result = CliRunner().invoke(_cli(), ["runtime", "info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("llama_bench", "llama_quantize", "lib_dir", "commit", "build_flags", "version"):
        assert key in data
    assert data["commit"] == runtime.commit and data["version"] == "0.3.36"
    assert data["build_flags"] == list(runtime.build_flags)

    plain = CliRunner().invoke(_cli(), ["runtime", "build"])  # already built: instant
    assert plain.exit_code == 0
    assert str(runtime.llama_bench) in plain.stdout and runtime.commit in plain.stdout


def test_info_without_a_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STAR_CACHE_DIR", str(tmp_path))
    result = CliRunner().invoke(_cli(), ["runtime", "info"])
    assert result.exit_code == 1
    assert "star runtime build" in result.stderr and "Traceback" not in result.output


def test_concurrent_builders_build_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        runtime: RuntimeInfo) -> None:
    """Racing callers serialise on the lock; one builds, the others read its marker."""
    monkeypatch.setenv("STAR_CACHE_DIR", str(tmp_path))
    calls: list[int] = []
    misses: list[Path] = []  # read_marker calls that found no build
    read_marker = build.read_marker

    def counting_read_marker(directory: Path) -> RuntimeInfo | None:
        info = read_marker(directory)
        if info is None:
            misses.append(directory)
        return info

    def fake_build(directory: Path, *, jobs: int, log: bool) -> RuntimeInfo:
        calls.append(1)
        # the builder found no build twice (before and under the lock); the build is not
        # done until the three others found none too: they race it, and queue on the lock
        wait_for("the other callers to find no build", lambda: len(misses) >= 5, 30)
        directory.mkdir(parents=True, exist_ok=True)
        info = RuntimeInfo(**{**runtime.__dict__, "root": directory})
        build._write_marker(directory, info)
        return info

    monkeypatch.setattr(build, "_build", fake_build)
    monkeypatch.setattr(build, "read_marker", counting_read_marker)
    results: list[RuntimeInfo] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_runtime()))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 4 and len(misses) == 5
    assert len({r.root for r in results}) == 1 and results[0].root.parent == tmp_path / "llama.cpp"


def test_a_pruned_cache_is_not_a_build(tmp_path: Path, runtime: RuntimeInfo) -> None:
    info = RuntimeInfo(**{**runtime.__dict__, "llama_bench": tmp_path / "gone"})
    build._write_marker(tmp_path, info)
    assert build.read_marker(tmp_path) is None


def test_vendored_commit_from_changelog(tmp_path: Path) -> None:
    (tmp_path / "CHANGELOG.md").write_text(
        "# Changelog\n\n## [Unreleased]\n\n## [0.3.36]\n\n"
        "- feat: update llama.cpp to ggml-org/llama.cpp@0c1e57098\n\n"
        "## [0.3.35]\n\n- feat: update llama.cpp to ggml-org/llama.cpp@4df29be4f\n"
    )
    assert vendored_commit(tmp_path) == "0c1e57098"
    assert vendored_commit(tmp_path / "missing") == "unknown"


def test_build_key_is_per_flags_and_cpu() -> None:
    key = build.build_key()
    assert key.startswith("0.3.36-") and len(key.split("-")[1]) == 10
    assert build.build_dir().name == key


@pytest.mark.parametrize("quant", ["q8_0", "q4_0"])
def test_quantized_matmuls_run_on_this_cpu(runtime: RuntimeInfo, tmp_path: Path,
                                           quant: str) -> None:
    """A quantized model prefills and decodes without dying: on AMX CPUs this llama.cpp's tile
    kernels crashed every Q8_0/Q4_0 matmul with SIGILL until the build left AMX out."""
    import torch

    from star.export import export_gguf
    from star.genome import Scale, load_genome, scale_spec
    from star.nn import StarModel
    from tests.conftest import ROOT

    spec = scale_spec(load_genome(ROOT / "genomes/lfm2-350m.yaml").to_spec(),
                      Scale(d_model=64, head_dim=16, vocab_size=256, context_length=512))
    model = StarModel(spec, device="cpu", dtype=torch.float32, seed=0)
    path = export_gguf(spec, model, tmp_path / f"m-{quant}.gguf", quant=quant, name=quant).path
    proc = subprocess.run(
        [str(runtime.llama_bench), "-m", str(path), "-p", "64", "-n", "4", "-t", "1", "-r", "1",
         "-o", "json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    rows = json.loads(proc.stdout)
    assert [(r["n_prompt"], r["n_gen"]) for r in rows] == [(64, 0), (0, 4)]
    assert all(r["avg_ns"] > 0 for r in rows)

"""Build ``star-et-bench`` (the ExecuTorch benchmark runner) once per host, into a cache.

The runner is one C++ file (``device_agents/executorch/star_et_bench.cpp``) compiled with g++
directly against the headers and prebuilt shared libraries that the ``executorch`` wheel ships:
the wheel's CMake config needs CMake >= 3.28 for its imported targets and Debian 12 has 3.25,
and a single translation unit needs no build system anyway (about 10 s on an idle core).

Cache layout, like the llama.cpp build: ``<cache>/executorch/<version>-<hash>/`` holding the
binary and ``runner.json`` (written last, atomically: present = complete). The hash covers the
ExecuTorch version and install location (the binary's rpath points there), the runner source,
the flags and the compiler, so any change rebuilds; builders serialise on a ``flock``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from star.runtime.build import (
    RuntimeBuildError,
    build_once,
    cache_root,
    compiler_version,
    read_marker_info,
    write_marker,
)

RUNNER_NAME = "star-et-bench"
_MARKER = "runner.json"
# Shared libraries linked by name; --no-as-needed keeps the registration-only ones (kernels,
# the XNNPACK delegate) whose static initialisers register operators and the backend.
LIBRARIES = (
    "executorch", "executorch_kernels_optimized", "executorch_backend_xnnpack",
    "executorch_threadpool", "executorch_etdump",
)  # fmt: skip
# What the wheel's executorch-config.cmake asks a consumer to compile with.
DEFINES = ("C10_USING_CUSTOM_GENERATED_MACROS", "ET_EVENT_TRACER_ENABLED", "ET_USE_THREADPOOL")
CXX_FLAGS = ("-std=c++17", "-O2", "-Wno-deprecated-declarations")


@dataclass(frozen=True)
class RunnerInfo:
    """One build of the runner: what it was built from and where it is."""

    executorch_version: str  # the wheel's version, e.g. "1.5.1+cpu"
    executorch_git: str  # the commit the wheel was built from
    runner: Path
    root: Path
    package_dir: Path  # the executorch package whose headers and libraries were used
    compile_flags: tuple[str, ...]  # recorded with every measurement (RuntimeSettings)
    compiler: str
    source_sha256: str
    build_seconds: float

    @property
    def runtime_version(self) -> str:
        """What the runner reports and measurements record: version and short commit."""
        return f"{self.executorch_version} ({self.executorch_git[:12]})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "executorch_version": self.executorch_version, "executorch_git": self.executorch_git,
            "runtime_version": self.runtime_version, "runner": str(self.runner),
            "root": str(self.root), "package_dir": str(self.package_dir),
            "compile_flags": list(self.compile_flags), "compiler": self.compiler,
            "source_sha256": self.source_sha256, "build_seconds": self.build_seconds,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunnerInfo:
        return cls(
            executorch_version=data["executorch_version"], executorch_git=data["executorch_git"],
            runner=Path(data["runner"]), root=Path(data["root"]),
            package_dir=Path(data["package_dir"]), compile_flags=tuple(data["compile_flags"]),
            compiler=data["compiler"], source_sha256=data["source_sha256"],
            build_seconds=float(data["build_seconds"]),
        )  # fmt: skip


def executorch_package() -> Path:
    """The installed ``executorch`` package directory (found without importing it)."""
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeBuildError(
            "the executorch package is not installed: pip install 'star-lab[executorch]' "
            "(or executorch==1.5.1)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    for needed in ("include/executorch", "lib/libexecutorch.so"):
        if not (root / needed).exists():
            raise RuntimeBuildError(f"{root}: the executorch wheel lacks {needed}")
    return root


def _version_py(package: Path, name: str) -> str | None:
    """A string assigned in the wheel's version.py (read, not imported: that pulls in torch)."""
    try:
        text = (package / "version.py").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.split(":")[0].strip() == name and value.strip():
            return value.strip().strip("'\"") or None
    return None


def _git_version(package: Path) -> str:
    return _version_py(package, "git_version") or "unknown"


def _version(package: Path) -> str:
    """The full version ("1.5.1+cpu": the local label says which build of the wheel)."""
    return _version_py(package, "__version__") or importlib.metadata.version("executorch")


def runner_source() -> Path:
    """The runner's C++ source, shipped in the device_agents.executorch package."""
    import device_agents.executorch as agent_pkg

    return Path(agent_pkg.__file__).with_name("star_et_bench.cpp")


def compile_command(package: Path, source: Path, output: Path, version: str) -> list[str]:
    """The g++ command line: headers, defines, libraries and an rpath into the wheel."""
    include = package / "include"
    lib = package / "lib"
    return [
        "g++", *CXX_FLAGS,
        *(f"-D{d}" for d in DEFINES), f'-DSTAR_ET_VERSION="{version}"',
        f"-I{include}", f"-I{include / 'executorch/runtime/core/portable_type/c10'}",
        str(source), "-o", str(output),
        f"-L{lib}", "-Wl,--no-as-needed", *(f"-l{name}" for name in LIBRARIES),
        "-Wl,--as-needed", f"-Wl,-rpath,{lib}",
    ]  # fmt: skip


def build_key(package: Path, source: Path) -> str:
    version = _version(package)
    payload = json.dumps(
        {"version": version, "git": _git_version(package), "package": str(package),
         "source": hashlib.sha256(source.read_bytes()).hexdigest(), "flags": list(CXX_FLAGS),
         "defines": list(DEFINES), "libs": list(LIBRARIES), "compiler": compiler_version("g++"),
         "machine": platform.machine()},
        sort_keys=True,
    )  # fmt: skip
    return f"{version}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def build_dir() -> Path:
    package = executorch_package()
    return cache_root() / "executorch" / build_key(package, runner_source())


def read_runner_marker(directory: Path | None = None) -> RunnerInfo | None:
    """The recorded build in ``directory`` (default: this host's), or None if absent or stale."""
    try:
        directory = directory or build_dir()
    except RuntimeBuildError:
        return None
    data = read_marker_info(directory / _MARKER)
    if data is None:
        return None
    info = RunnerInfo.from_dict(data)
    if not info.runner.exists() or not (info.package_dir / "lib/libexecutorch.so").exists():
        return None
    return info


def ensure_executorch_runner(*, log: bool = False) -> RunnerInfo:
    """The runner for this host, built first if needed. Raises ``RuntimeBuildError``."""
    directory = build_dir()
    return build_once(directory, lambda: read_runner_marker(directory),
                      lambda: _build(directory, log=log))


def _build(directory: Path, *, log: bool) -> RunnerInfo:
    if shutil.which("g++") is None:
        raise RuntimeBuildError("g++ not found: apt-get install -y g++")
    started = time.monotonic()
    package = executorch_package()
    source = runner_source()
    version = _version(package)
    git = _git_version(package)
    directory.mkdir(parents=True, exist_ok=True)
    runner = directory / RUNNER_NAME
    cmd = compile_command(package, source, runner, f"{version} ({git[:12]})")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (directory / "build.log").write_text(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    if log:
        print(proc.stdout + proc.stderr, end="")
    if proc.returncode != 0 or not runner.exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeBuildError(f"g++ failed (exit {proc.returncode}): {tail}")
    info = RunnerInfo(
        executorch_version=version,
        executorch_git=git,
        runner=runner,
        root=directory,
        package_dir=package,
        compile_flags=(*CXX_FLAGS, *(f"-D{d}" for d in DEFINES)),
        compiler=compiler_version("g++"),
        source_sha256=hashlib.sha256(source.read_bytes()).hexdigest(),
        build_seconds=round(time.monotonic() - started, 1),
    )
    write_marker(directory / _MARKER, info.to_dict())
    return info

"""Build stock llama.cpp, pinned, into a cache directory outside git.

The source is the llama.cpp that the ``llama-cpp-python`` sdist vendors (pinned version and sha256),
so a fresh machine needs only PyPI, cmake and a C++ compiler. One build directory per
(version, build flags, CPU): ``GGML_NATIVE=ON`` compiles for the host CPU, so figures from two
builds, or a cache copied to another CPU, must never be compared or reused.

The build is idempotent and concurrency-safe: a marker file (``runtime.json``, written last and
atomically) says the build is complete; builders serialise on a ``flock`` so that pytest-xdist
workers or two shells racing produce one build, and the losers wait and then read the marker.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from device_agents.llamacpp.local import cpu_model
from star.runtime.info import RuntimeInfo

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# sha256 of llama_cpp_python-0.3.36.tar.gz on PyPI: the source of every build, checked on use.
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SDIST_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
_SDIST_TOP = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}"
# The llama.cpp commit that sdist vendors (its CHANGELOG names it; every build checks it). Every
# device's binary must report this commit: agents refuse another (figures would not compare).
LLAMA_CPP_COMMIT = "0c1e57098"

# Flags that change the figures are recorded with every measurement (RuntimeSettings.build_flags).
BUILD_FLAGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=ON",  # libllama.so is loaded from Python for logits (star.runtime.logits)
    "-DGGML_NATIVE=ON",  # host-CPU code: ~2x prefill vs portable AVX2; never compare across builds
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",  # also drops llama-cli (built only with the server)
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
)
if platform.machine().lower() in ("x86_64", "amd64"):
    # No AMX: in this llama.cpp, tile instructions run on worker threads that never asked the
    # kernel for tile-data permission (XFD), and every quantized matmul dies with SIGILL on
    # AMX CPUs under recent kernels (seen here: Q8_0/Q4_0 llama-bench, exit 132; llama.cpp PR
    # 26954). GCC honours an explicit -mno-* whatever -march=native says; AVX-512/VNNI stay.
    _NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    BUILD_FLAGS += (f"-DCMAKE_C_FLAGS={_NO_AMX}", f"-DCMAKE_CXX_FLAGS={_NO_AMX}")
TARGETS: tuple[str, ...] = ("llama-bench", "llama-quantize", "llama-completion", "llama", "ggml")

_MARKER = "runtime.json"
_MARKER_FORMAT = 1


class RuntimeBuildError(RuntimeError):
    """The pinned llama.cpp could not be fetched, verified or built; the message says which."""


def cache_root() -> Path:
    """``$STAR_CACHE_DIR`` if set, else ``~/.cache/star-lab``."""
    env = os.environ.get("STAR_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "star-lab"


def build_key() -> str:
    """``<version>-<hash>``: the hash covers the flags and, because GGML_NATIVE=ON, the CPU."""
    payload = json.dumps(
        {"flags": list(BUILD_FLAGS), "targets": list(TARGETS), "cpu": cpu_model(),
         "machine": platform.machine(), "sdist": SDIST_SHA256},
        sort_keys=True,
    )
    return f"{LLAMA_CPP_PYTHON_VERSION}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def build_dir() -> Path:
    return cache_root() / "llama.cpp" / build_key()


def read_marker(directory: Path | None = None) -> RuntimeInfo | None:
    """The recorded build in ``directory`` (default: this host's), or None if absent or stale."""
    data = read_marker_info((directory or build_dir()) / _MARKER)
    if data is None:
        return None
    info = RuntimeInfo.from_dict(data)
    # A cache someone pruned by hand is not a build: rebuild rather than fail later.
    needed = (info.llama_bench, info.llama_quantize, info.lib_dir / "libllama.so")
    if not all(p.exists() for p in needed):
        return None
    return info


B = TypeVar("B")  # what a build produces (its marker's info)


def ensure_runtime(*, jobs: int | None = None, log: bool = False) -> RuntimeInfo:
    """Return the pinned llama.cpp build, building it first if needed (~3 min on 2 cores).

    ``log=True`` streams the cmake output to stderr (it always goes to ``build.log`` too).
    """
    directory = build_dir()
    return build_once(directory, lambda: read_marker(directory),
                      lambda: _build(directory, jobs=jobs or os.cpu_count() or 1, log=log))


def build_once(directory: Path, read: Callable[[], B | None], build: Callable[[], B]) -> B:
    """The cached build in ``directory`` (``read``), else ``build`` it, once per host: a file
    lock beside the directory makes a second process wait for the first one's build and then
    read it, instead of building again. Shared by every runtime build (x86, phones, ExecuTorch).
    """
    found = read()
    if found is not None:
        return found
    directory.parent.mkdir(parents=True, exist_ok=True)
    with _locked(directory.parent / f"{directory.name}.lock"):
        found = read()  # another process may have finished while we waited
        if found is not None:
            return found
        return build()


def read_marker_info(path: Path) -> dict[str, Any] | None:
    """The ``info`` a finished build recorded in its marker file ``path``; None when there is none,
    it cannot be read, or it is of another format (a build to redo, not an error)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != _MARKER_FORMAT:
        return None
    return data["info"]


def write_marker(path: Path, info: dict[str, Any]) -> None:
    """Record a finished build's ``info`` in ``path`` atomically: a reader sees no file or all
    of it, so a build killed while writing is built again rather than half-read."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump({"format": _MARKER_FORMAT, "info": info}, handle, indent=2)
    os.replace(tmp, path)


def compiler_version(cxx: str) -> str:
    """The first line of ``cxx --version`` (recorded with a build); "" if it is not installed."""
    if shutil.which(cxx) is None:
        return ""
    proc = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    return proc.stdout.splitlines()[0] if proc.returncode == 0 and proc.stdout else ""


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist() -> Path:
    """The verified sdist: ``$STAR_LLAMA_SDIST``, the cached copy, or ``pip download``."""
    override = os.environ.get("STAR_LLAMA_SDIST")
    if override:
        candidate = Path(override).expanduser()
    else:
        sdist_dir = cache_root() / "sdist"
        candidate = sdist_dir / SDIST_NAME
        if not candidate.exists():
            sdist_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=sdist_dir) as tmp:  # no partial file on a kill
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                       ":all:", f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", tmp]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                downloaded = Path(tmp) / SDIST_NAME
                if proc.returncode != 0 or not downloaded.exists():
                    raise RuntimeBuildError(
                        f"could not download {SDIST_NAME} from PyPI: {_tail(proc.stderr)}"
                    )
                os.replace(downloaded, candidate)
    if not candidate.is_file():
        raise RuntimeBuildError(f"llama-cpp-python sdist not found: {candidate}")
    actual = _sha256(candidate)
    if actual != SDIST_SHA256:
        raise RuntimeBuildError(
            f"{candidate}: sha256 {actual} differs from the pinned {SDIST_SHA256}"
        )
    return candidate


def vendored_commit(sdist_root: Path) -> str:
    """The llama.cpp commit the sdist vendors, from its CHANGELOG entry for the pinned version.

    The sdist has no .git, so llama.cpp's own build-info would say "unknown"; we pass this commit
    as LLAMA_BUILD_COMMIT so that every binary (and llama-bench's ``build_commit``) reports it.
    """
    try:
        text = (sdist_root / "CHANGELOG.md").read_text()
    except OSError:
        return "unknown"
    section = re.search(
        rf"^## \[{re.escape(LLAMA_CPP_PYTHON_VERSION)}\]\s*$(.*?)(?=^## \[|\Z)", text, re.M | re.S
    )
    if section:
        match = re.search(r"ggml-org/llama\.cpp@([0-9a-f]{7,40})", section.group(1))
        if match:
            return match.group(1)
    return "unknown"


def checked_commit(sdist_root: Path) -> str:
    """``vendored_commit``, which must be the pinned ``LLAMA_CPP_COMMIT``."""
    commit = vendored_commit(sdist_root)
    if commit != LLAMA_CPP_COMMIT:
        raise RuntimeBuildError(
            f"the sdist vendors llama.cpp {commit}, not the pinned {LLAMA_CPP_COMMIT}"
        )
    return commit


def _extract(sdist: Path, dest: Path) -> Path:
    """Unpack the sdist's top level files and vendor/llama.cpp into ``dest``; return its root."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    wanted = (f"{_SDIST_TOP}/CHANGELOG.md", f"{_SDIST_TOP}/vendor/llama.cpp")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(wanted)]
        tar.extractall(dest, members=members, filter="data")
    return dest / _SDIST_TOP


def _run_logged(cmd: list[str], logfile: Path, *, log: bool) -> None:
    with open(logfile, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if log:
                sys.stderr.write(line)
        code = proc.wait()
    if code != 0:
        tail = "".join(logfile.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeBuildError(f"{cmd[0]} failed (exit {code}); log: {logfile}\n{tail}")


def cmake_build(
    directory: Path, flags: Sequence[str], targets: Sequence[str], *, jobs: int, log: bool
) -> tuple[str, Path]:
    """Compile ``targets`` of the pinned llama.cpp with ``flags`` in a fresh ``directory`` (the
    sdist under src/, cmake's tree under build/, its output in build.log): the one recipe of the
    x86 and phone builds. Returns the verified commit and the build folder."""
    sdist = fetch_sdist()
    if directory.exists():
        shutil.rmtree(directory)  # a half-finished build from a killed process
    directory.mkdir(parents=True)
    src_root = _extract(sdist, directory / "src")
    commit = checked_commit(src_root)
    source = src_root / "vendor" / "llama.cpp"
    build = directory / "build"
    logfile = directory / "build.log"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    cmake_args = [*flags, f"-DLLAMA_BUILD_COMMIT={commit}", "-DLLAMA_BUILD_NUMBER=0"]
    _run_logged(["cmake", "-S", str(source), "-B", str(build), *generator, *cmake_args],
                logfile, log=log)
    _run_logged(["cmake", "--build", str(build), "--config", "Release", "-j", str(jobs),
                 "--target", *targets], logfile, log=log)
    return commit, build


def _build(directory: Path, *, jobs: int, log: bool) -> RuntimeInfo:
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise RuntimeBuildError(f"{tool} not found: apt-get install -y cmake g++ ninja-build")
    started = time.monotonic()
    commit, build = cmake_build(directory, BUILD_FLAGS, TARGETS, jobs=jobs, log=log)
    bin_dir = build / "bin"
    completion = bin_dir / "llama-completion"
    info = RuntimeInfo(
        version=LLAMA_CPP_PYTHON_VERSION,
        commit=commit,
        build_number=0,
        build_flags=BUILD_FLAGS,
        root=directory,
        llama_bench=bin_dir / "llama-bench",
        llama_quantize=bin_dir / "llama-quantize",
        llama_completion=completion if completion.exists() else None,
        lib_dir=_lib_dir(build),
        sdist_sha256=SDIST_SHA256,
        cpu_model=cpu_model(),
        compiler=compiler_version("c++"),
        build_seconds=round(time.monotonic() - started, 1),
    )
    reported = _reported_commit(info)
    if reported not in (None, commit):
        raise RuntimeBuildError(f"built binaries report commit {reported}, expected {commit}")
    _write_marker(directory, info)
    return info


def _lib_dir(build: Path) -> Path:
    for candidate in (build / "bin", build / "lib", build / "src"):
        if (candidate / "libllama.so").exists():
            return candidate
    found = sorted(build.rglob("libllama.so"))
    if not found:
        raise RuntimeBuildError(f"libllama.so not found under {build}")
    return found[0].parent


def _reported_commit(info: RuntimeInfo) -> str | None:
    """What the binaries themselves say (``llama-completion --version``), if it can be read."""
    if info.llama_completion is None:
        return None
    proc = subprocess.run([str(info.llama_completion), "--version"], capture_output=True,
                          text=True, timeout=60)
    # "version: 0.5.0-dev (build 0, commit 0c1e57098)"
    match = re.search(r"commit ([^\s)]+)\)", proc.stdout + proc.stderr)
    return match.group(1) if match else None


def _write_marker(directory: Path, info: RuntimeInfo) -> None:
    write_marker(directory / _MARKER, info.to_dict())


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])

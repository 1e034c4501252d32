"""Cross-build the pinned llama.cpp for phones: a static aarch64 ``llama-bench``, no NDK.

The source is the same verified sdist as the host build (``star.runtime.build``), so the phone
binary reports the same llama.cpp commit as the coordinator's runtime. Debian's
``crossbuild-essential-arm64`` (aarch64-linux-gnu-gcc) compiles it; linking statically against
glibc gives one self-contained ELF that Android's kernel runs as is (no bionic, no libraries to
push), and that ``qemu-aarch64`` runs on an x86 host for tests.

Two ISA levels (``TARGETS``):

* ``android-arm64``: ``armv8.2-a+dotprod``, the default. Every arm64 SoC since 2017-2018
  (Cortex-A55/A75 and later: Snapdragon 845+, Exynos 9810+, Dimensity, Tensor) has the SDOT/UDOT
  instructions that llama.cpp's quantized (Q4_0/Q8_0) kernels use, and these are what people ship.
* ``android-arm64-compat``: plain ``armv8-a`` (NEON only), for older phones (Cortex-A53/A73
  only). Figures from the two builds are not comparable: the build flags are recorded with every
  measurement, like the x86 build's.

The build is cached per (version, target, flags, cross compiler) under the same cache root as the
host build, with the same marker-file and ``flock`` protocol.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from star.runtime.build import (
    LLAMA_CPP_PYTHON_VERSION,
    SDIST_SHA256,
    RuntimeBuildError,
    build_once,
    cache_root,
    cmake_build,
    compiler_version,
    read_marker_info,
    write_marker,
)

CROSS_CC = "aarch64-linux-gnu-gcc"
CROSS_CXX = "aarch64-linux-gnu-g++"
SYSROOT = "/usr/aarch64-linux-gnu"
DEFAULT_TARGET = "android-arm64"

# target name -> GGML_CPU_ARM_ARCH (the ISA level the kernels are compiled for)
TARGETS: dict[str, str] = {
    "android-arm64": "armv8.2-a+dotprod",
    "android-arm64-compat": "armv8-a",
}

# /proc/cpuinfo "Features" a phone must list to run each ISA level (checked by the agent before
# it measures: without them every benchmark dies with SIGILL)
_FEATURES: dict[str, tuple[str, ...]] = {"+dotprod": ("asimddp",), "+i8mm": ("i8mm",),
                                         "+sve": ("sve",)}  # fmt: skip


def required_cpu_features(arch: str) -> tuple[str, ...]:
    """The /proc/cpuinfo features an ``arch`` ("armv8.2-a+dotprod") build needs."""
    return tuple(f for ext, feats in _FEATURES.items() if ext in arch for f in feats)


_COMMON_FLAGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DCMAKE_SYSTEM_NAME=Linux",
    "-DCMAKE_SYSTEM_PROCESSOR=aarch64",
    f"-DCMAKE_C_COMPILER={CROSS_CC}",
    f"-DCMAKE_CXX_COMPILER={CROSS_CXX}",
    f"-DCMAKE_FIND_ROOT_PATH={SYSROOT}",
    "-DCMAKE_FIND_ROOT_PATH_MODE_PROGRAM=NEVER",
    "-DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY",
    "-DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DCMAKE_EXE_LINKER_FLAGS=-static",  # one ELF: nothing to push beside it, bionic irrelevant
    "-DGGML_NATIVE=OFF",  # cross build: the ISA comes from GGML_CPU_ARM_ARCH below
    "-DGGML_BACKEND_DL=OFF",  # static glibc cannot dlopen
    "-DGGML_OPENMP=OFF",  # libgomp is not reliably static; ggml's own thread pool instead
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
)
BUILD_TARGETS: tuple[str, ...] = ("llama-bench",)
_MARKER = "runtime.json"


@dataclass(frozen=True)
class PhoneRuntime:
    """A finished cross build: what the Android agent pushes, and what it was built from."""

    target: str  # "android-arm64" or "android-arm64-compat"
    arch: str  # GGML_CPU_ARM_ARCH
    version: str  # llama-cpp-python sdist version the source comes from
    commit: str  # llama.cpp commit compiled into the binary (llama-bench's build_commit)
    build_flags: tuple[str, ...]  # recorded with every measurement taken with this binary
    root: Path
    llama_bench: Path
    sdist_sha256: str
    compiler: str
    build_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "arch": self.arch, "version": self.version,
            "commit": self.commit, "build_flags": list(self.build_flags), "root": str(self.root),
            "llama_bench": str(self.llama_bench), "sdist_sha256": self.sdist_sha256,
            "compiler": self.compiler, "build_seconds": self.build_seconds,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhoneRuntime:
        return cls(
            target=data["target"], arch=data["arch"], version=data["version"],
            commit=data["commit"], build_flags=tuple(data["build_flags"]),
            root=Path(data["root"]), llama_bench=Path(data["llama_bench"]),
            sdist_sha256=data["sdist_sha256"], compiler=data.get("compiler", ""),
            build_seconds=float(data.get("build_seconds", 0.0)),
        )  # fmt: skip


def build_flags(target: str = DEFAULT_TARGET) -> tuple[str, ...]:
    """The cmake flags of ``target``; raises ``RuntimeBuildError`` naming the known targets."""
    if target not in TARGETS:
        raise RuntimeBuildError(f"unknown target {target!r}: one of {', '.join(TARGETS)}")
    return (*_COMMON_FLAGS, f"-DGGML_CPU_ARM_ARCH={TARGETS[target]}")


def cross_build_dir(target: str = DEFAULT_TARGET) -> Path:
    """``<cache>/llama.cpp/<version>-<target>-<hash of flags, targets, sdist, compiler>``."""
    payload = json.dumps(
        {"flags": list(build_flags(target)), "targets": list(BUILD_TARGETS),
         "sdist": SDIST_SHA256, "compiler": compiler_version(CROSS_CXX)},
        sort_keys=True,
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()[:10]
    return cache_root() / "llama.cpp" / f"{LLAMA_CPP_PYTHON_VERSION}-{target}-{digest}"


def read_phone_marker(target: str = DEFAULT_TARGET) -> PhoneRuntime | None:
    """The cached build for ``target``, or None if absent, stale or pruned by hand."""
    data = read_marker_info(cross_build_dir(target) / _MARKER)
    if data is None:
        return None
    info = PhoneRuntime.from_dict(data)
    return info if info.llama_bench.is_file() else None


def ensure_phone_runtime(
    target: str = DEFAULT_TARGET, *, jobs: int | None = None, log: bool = False
) -> PhoneRuntime:
    """Return the cached phone build of ``target``, cross-compiling it first if needed.

    The first build is ~130 compile steps: tens of minutes on a busy 2-core machine.
    """
    directory = cross_build_dir(target)
    return build_once(directory, lambda: read_phone_marker(target),
                      lambda: _cross_build(target, directory, jobs=jobs or os.cpu_count() or 1,
                                           log=log))


def _cross_build(target: str, directory: Path, *, jobs: int, log: bool) -> PhoneRuntime:
    for tool in ("cmake", CROSS_CXX):
        if shutil.which(tool) is None:
            raise RuntimeBuildError(
                f"{tool} not found: apt-get install -y cmake crossbuild-essential-arm64"
            )
    started = time.monotonic()
    flags = build_flags(target)
    commit, build = cmake_build(directory, flags, BUILD_TARGETS, jobs=jobs, log=log)
    bench = build / "bin" / "llama-bench"
    check_aarch64_static(bench)
    if commit != "unknown" and commit.encode() not in bench.read_bytes():
        raise RuntimeBuildError(f"{bench} does not carry the pinned commit {commit}")
    info = PhoneRuntime(
        target=target, arch=TARGETS[target], version=LLAMA_CPP_PYTHON_VERSION, commit=commit,
        build_flags=flags, root=directory, llama_bench=bench, sdist_sha256=SDIST_SHA256,
        compiler=compiler_version(CROSS_CXX), build_seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip
    shutil.rmtree(directory / "src", ignore_errors=True)  # 100+ MB of source nobody reads again
    write_marker(directory / _MARKER, info.to_dict())
    return info


def check_aarch64_static(path: Path) -> None:
    """Raise unless ``path`` is a statically linked aarch64 ELF executable.

    Reads the ELF header (e_machine 183 = EM_AARCH64) and looks for a PT_INTERP program header:
    a dynamically linked binary would need a loader and libraries that a phone does not have.
    """
    data = path.read_bytes()[:4096]
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise RuntimeBuildError(f"{path} is not a 64-bit little-endian ELF file")
    machine = int.from_bytes(data[18:20], "little")
    if machine != 183:
        raise RuntimeBuildError(f"{path} is built for ELF machine {machine}, not aarch64 (183)")
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    for i in range(phnum):
        offset = phoff + i * phentsize
        if int.from_bytes(data[offset : offset + 4], "little") == 3:  # PT_INTERP
            raise RuntimeBuildError(f"{path} is dynamically linked (has an ELF interpreter)")

"""``RuntimeInfo``: a frozen record of one llama.cpp build (what was built, from what, where)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RuntimeInfo:
    version: str  # llama-cpp-python sdist version the llama.cpp source comes from
    commit: str  # llama.cpp commit (what the binaries and llama-bench's build_commit report)
    build_number: int  # llama.cpp build number; 0: the sdist carries no git history to count
    build_flags: tuple[str, ...]  # cmake flags; GGML_NATIVE=ON makes figures host-specific
    root: Path  # the build's cache directory
    llama_bench: Path
    llama_quantize: Path
    llama_completion: Path | None  # None if this llama.cpp has no llama-completion target
    lib_dir: Path  # holds libllama.so and libggml*.so (LLAMA_CPP_LIB_PATH for llama_cpp)
    sdist_sha256: str
    cpu_model: str  # the CPU the native build targets
    compiler: str
    build_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; paths as strings. Keys are the stable ``star runtime info`` keys."""
        return {
            "version": self.version,
            "commit": self.commit,
            "build_number": self.build_number,
            "build_flags": list(self.build_flags),
            "root": str(self.root),
            "llama_bench": str(self.llama_bench),
            "llama_quantize": str(self.llama_quantize),
            "llama_completion": str(self.llama_completion) if self.llama_completion else None,
            "lib_dir": str(self.lib_dir),
            "sdist_sha256": self.sdist_sha256,
            "cpu_model": self.cpu_model,
            "compiler": self.compiler,
            "build_seconds": self.build_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeInfo:
        completion = data.get("llama_completion")
        return cls(
            version=data["version"],
            commit=data["commit"],
            build_number=int(data["build_number"]),
            build_flags=tuple(data["build_flags"]),
            root=Path(data["root"]),
            llama_bench=Path(data["llama_bench"]),
            llama_quantize=Path(data["llama_quantize"]),
            llama_completion=Path(completion) if completion else None,
            lib_dir=Path(data["lib_dir"]),
            sdist_sha256=data["sdist_sha256"],
            cpu_model=data.get("cpu_model", ""),
            compiler=data.get("compiler", ""),
            build_seconds=float(data.get("build_seconds", 0.0)),
        )

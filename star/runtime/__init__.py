"""The pinned llama.cpp runtime: build it once per host, then use its binaries and libllama.

``ensure_runtime()`` is the entry point everyone else uses; it returns a frozen ``RuntimeInfo``
and builds only when no complete build for this host exists. ``star.runtime.logits`` evaluates a
GGUF's logits through libllama (for exporter equivalence tests).
"""

from __future__ import annotations

from star.runtime.build import (
    LLAMA_CPP_PYTHON_VERSION,
    RuntimeBuildError,
    build_dir,
    ensure_runtime,
    read_marker,
)
from star.runtime.info import RuntimeInfo

__all__ = [
    "LLAMA_CPP_PYTHON_VERSION",
    "RuntimeBuildError",
    "RuntimeInfo",
    "build_dir",
    "ensure_runtime",
    "read_marker",
]

"""Run the pinned build's ``llama-quantize`` on a GGUF: the only maker of quantized exports.

The stock tool is the truth for quantized files: what it writes is what people run, tensor for
tensor (``star.export.mixture`` ports its choices so that they can be checked and costed, but
never writes data). Output is deterministic: every row is quantized on its own, whatever the
thread count.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from star.export.errors import ExportError
from star.export.quant import Quant

# Seconds allowed: a fixed start-up allowance plus a rate far below what 2 busy cores do
# (lfm2-350m F16, 711 MB -> Q4_K_M in about 10 s here).
_TIMEOUT_BASE_S = 120.0
_TIMEOUT_S_PER_GB = 120.0


class ExportQuantizeError(ExportError):
    """``llama-quantize`` is unavailable, failed, or ran past its timeout."""


@dataclass(frozen=True)
class QuantizeRun:
    """One finished ``llama-quantize`` call."""

    command: tuple[str, ...]
    seconds: float
    runtime: str  # "llama.cpp <commit>" of the binary used


def quantize_file(src: Path, dst: Path, quant: Quant, *, binary: Path | None = None,
                  runtime: str | None = None, threads: int | None = None) -> QuantizeRun:
    """``llama-quantize src dst QUANT [threads]``; ``binary`` defaults to the pinned build's
    (built on first use, ~3 min). Raises ``ExportQuantizeError`` with the tool's last output."""
    if not quant.by_tool:
        raise ValueError(f"{quant.value} is written by our writer, not llama-quantize")
    if binary is None:
        binary, runtime = _pinned()
    command = [str(binary), str(src), str(dst), quant.tool_name]
    if threads:
        command.append(str(threads))
    timeout = _TIMEOUT_BASE_S + _TIMEOUT_S_PER_GB * src.stat().st_size / 1e9
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise ExportQuantizeError(f"llama-quantize {quant.tool_name}: no result after "
                                  f"{timeout:.0f} s") from None
    except OSError as exc:
        raise ExportQuantizeError(f"llama-quantize could not start: {exc}") from None
    if proc.returncode != 0 or not dst.is_file():
        tail = (proc.stderr + proc.stdout).strip().splitlines()[-12:]
        raise ExportQuantizeError(
            f"llama-quantize {quant.tool_name} failed (exit {proc.returncode}): " + "\n".join(tail)
        )
    return QuantizeRun(tuple(command), time.perf_counter() - start, runtime or str(binary))


def _pinned() -> tuple[Path, str]:
    from star.runtime import RuntimeBuildError, ensure_runtime

    try:
        info = ensure_runtime()
    except (RuntimeBuildError, OSError) as exc:
        raise ExportQuantizeError(f"the pinned llama.cpp (llama-quantize) is unavailable: {exc}"
                                  ) from None
    return info.llama_quantize, f"llama.cpp {info.commit}"

"""Which runtime measures which file: the one rule shared by jobs, leases and results.

A job's runtime follows from its artifact's format (a GGUF is run by llama.cpp's llama-bench, a
.pte by the ExecuTorch runner ``star-et-bench``), so jobs made by hand and by the search cannot
disagree. Agents advertise the runtimes they have (``DeviceProperties.runtimes``); a device that
advertises none is an agent from before ExecuTorch, which runs llama.cpp only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LLAMA_CPP = "llama.cpp"
EXECUTORCH = "executorch"
RUNTIMES = (LLAMA_CPP, EXECUTORCH)

# artifact format -> the runtime that runs it
RUNTIME_OF_FORMAT = {"gguf": LLAMA_CPP, "pte": EXECUTORCH}
FORMAT_OF_RUNTIME = {runtime: fmt for fmt, runtime in RUNTIME_OF_FORMAT.items()}


class UnknownFormat(ValueError):
    """No runtime runs this artifact format."""


def runtime_of_format(fmt: str) -> str:
    """The runtime of an artifact format; ``UnknownFormat`` for any other format."""
    try:
        return RUNTIME_OF_FORMAT[fmt]
    except KeyError:
        raise UnknownFormat(
            f"no runtime runs format {fmt!r} (known: {', '.join(sorted(RUNTIME_OF_FORMAT))})"
        ) from None


def device_runtimes(properties: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The runtimes a device advertised at registration (llama.cpp when it said nothing)."""
    found = (properties or {}).get("runtimes")
    if not found:
        return (LLAMA_CPP,)
    return tuple(r for r in RUNTIMES if r in found)

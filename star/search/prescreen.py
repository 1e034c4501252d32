"""Analytic pre-screening: reject what cannot meet a budget before any device time is spent.

Only *lower bounds* reject: a genome is infeasible when the bytes it must hold at a context (its
weights as stored in the GGUF plus its KV cache and recurrent state) already exceed a peak-RSS
budget; runtime overhead only adds to that, so nothing that could fit is ever rejected.
The runtime check asks ``star.export`` whether a stock llama.cpp architecture runs the genome.
"""

from __future__ import annotations

from dataclasses import dataclass

from star.cost import Quant, kv_bytes, state_bytes, weight_bytes
from star.genome.spec import ArchSpec


@dataclass(frozen=True)
class Verdict:
    """``ok`` False carries the reason, kept with the candidate as why it was not measured."""

    ok: bool
    reason: str = ""


def rss_lower_bound(spec: ArchSpec, context: int, quant: Quant,
                    cache_bytes_per_element: float = 2) -> float:
    """Bytes the runtime must hold at ``context``: weights + KV cache + recurrent state."""
    return (weight_bytes(spec, quant) + kv_bytes(spec, context, cache_bytes_per_element)
            + state_bytes(spec))


def check_memory(spec: ArchSpec, *, context: int, budget_bytes: float, quant: Quant,
                 cache_bytes_per_element: float = 2) -> Verdict:
    need = rss_lower_bound(spec, context, quant, cache_bytes_per_element)
    if need > budget_bytes:
        return Verdict(False, f"peak RSS at {context} tokens is at least {need / 2**20:,.0f} MiB "
                              f"(weights + KV + state) > budget {budget_bytes / 2**20:,.0f} MiB")
    return Verdict(True)


def check_runtime(spec: ArchSpec, allowed: tuple[str, ...] | None = None) -> Verdict:
    """Can stock llama.cpp run it exactly (and, if ``allowed``, through one of these archs)?"""
    from star.export import UnsupportedGenome, check_exportable

    try:
        target = check_exportable(spec)
    except UnsupportedGenome as exc:
        return Verdict(False, str(exc))
    if allowed is not None and target.name not in allowed:
        return Verdict(False, f"runs as llama.cpp arch {target.name!r}, not one of {allowed}")
    return Verdict(True)

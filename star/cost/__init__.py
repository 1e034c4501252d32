"""Analytic cost model: exact parameter and byte counts, FLOPs, and roofline latency floors.

Pure Python over an ``ArchSpec`` (no torch), cheap enough to pre-screen thousands of genomes
before any device time is spent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from star.cost.flops import decode_flops, prefill_flops
from star.cost.memory import kv_bytes, kv_bytes_per_token, state_bytes, weight_bytes
from star.cost.params import ParamCounts, count_params, tensors
from star.cost.quant import Quant, StorageType, StoredTensor, storage_type, stored_tensors
from star.cost.roofline import DeviceRoofline, decode_seconds, ttft_seconds
from star.genome.spec import ArchSpec

__all__ = [
    "CostReport", "DeviceRoofline", "ParamCounts", "Quant", "StorageType", "StoredTensor",
    "analyze", "count_params", "decode_flops", "decode_seconds", "kv_bytes", "kv_bytes_per_token",
    "prefill_flops", "state_bytes", "storage_type", "stored_tensors", "tensors", "ttft_seconds",
    "weight_bytes",
]


@dataclass(frozen=True)
class CostReport:
    """Everything the search and ``star genome stats`` need, JSON-ready via ``to_dict``."""

    params: int
    embedding_params: int
    non_embedding_params: int
    active_params: int
    stored_params: int
    weight_bytes: dict[str, int]  # per offered Quant value; a type the spec cannot take is absent
    kv_bytes_per_token: float
    kv_bytes: dict[int, float]  # KV-cache bytes holding C tokens (windows respected)
    cache_bytes_per_element: float
    state_bytes: int
    n_layers: int
    layer_mix: dict[str, int]
    prefill_flops: dict[int, float]
    decode_flops: dict[int, float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def analyze(spec: ArchSpec, *, cache_bytes_per_element: float = 2,
            contexts: tuple[int, ...] = (4096, 32768)) -> CostReport:
    counts = count_params(spec)
    mix: dict[str, int] = {}
    for layer in spec.layers:
        key = layer.mixer.kind.value
        mix[key] = mix.get(key, 0) + 1
    return CostReport(
        params=counts.params,
        embedding_params=counts.embedding,
        non_embedding_params=counts.non_embedding,
        active_params=counts.active,
        stored_params=counts.stored,
        weight_bytes=_weight_bytes_per_quant(spec),
        kv_bytes_per_token=kv_bytes_per_token(spec, cache_bytes_per_element),
        kv_bytes={c: kv_bytes(spec, c, cache_bytes_per_element) for c in contexts},
        cache_bytes_per_element=cache_bytes_per_element,
        state_bytes=state_bytes(spec),
        n_layers=spec.n_layers,
        layer_mix=mix,
        prefill_flops={c: prefill_flops(spec, c) for c in contexts},
        decode_flops={c: decode_flops(spec, c) for c in contexts},
    )


def _weight_bytes_per_quant(spec: ArchSpec) -> dict[str, int]:
    """Weight bytes in every offered type; one llama-quantize would refuse (Q1_0 on rows that
    are not multiples of 128) is left out rather than guessed."""
    from star.export import UnsupportedQuant

    out: dict[str, int] = {}
    for q in Quant:
        try:
            out[q.value] = weight_bytes(spec, q)
        except UnsupportedQuant:
            continue
    return out

"""Roofline latency estimates from a device's memory bandwidth and compute throughput.

Prefill is compute-bound (all prompt tokens share each weight read); decode is bandwidth-bound
(each token reads the active weights, the KV cache so far and the recurrent state). The estimate
is the larger of the two limits: a floor, not a prediction; measured figures come from devices.
"""

from __future__ import annotations

from dataclasses import dataclass

from star.cost.flops import decode_flops, prefill_flops
from star.cost.memory import kv_bytes, state_bytes
from star.cost.quant import Quant, source_tensors, stored_tensors
from star.genome.spec import ArchSpec


@dataclass(frozen=True)
class DeviceRoofline:
    """A device's sustained memory bandwidth (bytes/s) and matmul throughput (FLOP/s)."""

    name: str
    bandwidth: float
    flops: float


def active_weight_bytes(spec: ArchSpec, quant: Quant | str) -> float:
    """Weight bytes read per decoded token: active experts only, the head, no embedding rows."""
    sources = source_tensors(spec)
    total = 0.0
    for t in stored_tensors(spec, quant):
        src = sources.get(t.source)
        if t.source == "embed.weight":
            total += t.nbytes if spec.tie_embeddings else 0.0
            continue
        total += t.nbytes * (src.active_fraction if src is not None else 1.0)
    return total


def ttft_seconds(spec: ArchSpec, context: int, device: DeviceRoofline, quant: Quant) -> float:
    compute = prefill_flops(spec, context) / device.flops
    memory = active_weight_bytes(spec, quant) / device.bandwidth
    return max(compute, memory)


def decode_seconds(spec: ArchSpec, depth: int, device: DeviceRoofline, quant: Quant,
                   kv_bytes_per_element: float = 2) -> float:
    compute = decode_flops(spec, depth) / device.flops
    read = (active_weight_bytes(spec, quant) + kv_bytes(spec, depth, kv_bytes_per_element)
            + state_bytes(spec))
    return max(compute, read / device.bandwidth)

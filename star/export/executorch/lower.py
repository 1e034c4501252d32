"""``StaticModel`` -> ExecuTorch program bytes: quantize, torch.export twice, lower to XNNPACK.

Two methods share one mutable-buffer arena (``share_mutable_buffers``), so the state prefill
leaves is the state decode reads; ``index_copy_`` KV updates are re-inplaced (no cache copies).
Constant methods carry what a runner needs without torch: ``max_context``, ``prefill_chunk``,
``vocab_size`` and ``star_pte_format``. Lowering costs about 10 s per method on an idle core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.export import Dim, ExportedProgram, export

from star.export.executorch.model import StaticModel
from star.export.executorch.options import GROUP_SIZE, PteOptions, PteQuant

PTE_FORMAT = 1  # bump when the method signatures or constant methods change
METHODS = ("prefill", "decode")
CONSTANT_METHODS = ("max_context", "prefill_chunk", "vocab_size", "star_pte_format")


@dataclass(frozen=True)
class Lowered:
    """The program and what it took."""

    buffer: bytes
    fp32_linears: tuple[str, ...]  # linear layers 8da4w left in float32 (width not a multiple)
    export_seconds: float
    lower_seconds: float


def quantize_8da4w(model: StaticModel) -> tuple[str, ...]:
    """Int8 dynamic activations, int4 weights in groups of 32, on every eligible nn.Linear
    (the head included; the embedding table stays float32). In place. Returns the linears left
    in float32 because their input width is not a multiple of the group."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    skipped = tuple(
        name for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.in_features % GROUP_SIZE
    )  # fmt: skip

    seen: set[int] = set()

    def eligible(module: nn.Module, fqn: str) -> bool:
        # quantize_ walks children, not unique modules: a mixer shared by two layers is met
        # twice, and its already quantized weight must not be quantized again.
        if id(module) in seen or not isinstance(module, nn.Linear):
            return False
        seen.add(id(module))
        return module.in_features % GROUP_SIZE == 0

    config = Int8DynamicActivationIntxWeightConfig(
        weight_dtype=torch.int4,  # type: ignore[attr-defined]
        weight_granularity=PerGroup(GROUP_SIZE),
    )
    quantize_(model, config, filter_fn=eligible)
    return skipped


def example_inputs(n_tokens: int, start: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, input_pos, kv_positions) of a call at ``start`` with ``n_tokens`` tokens."""
    return (
        torch.zeros(1, n_tokens, dtype=torch.int64),
        torch.tensor([start], dtype=torch.int64),
        torch.arange(start + n_tokens, dtype=torch.int64),
    )


def export_methods(model: StaticModel) -> dict[str, ExportedProgram]:
    """torch.export of prefill (T = chunk) and decode (T = 1); the KV length L is dynamic."""
    programs = {}
    for name, n_tokens in (("prefill", model.chunk), ("decode", 1)):
        start = 1  # example L = T + 1 >= 2: torch.export specialises sizes 0 and 1
        kv = Dim(f"kv_{name}", min=n_tokens, max=model.max_context)
        with torch.no_grad():
            programs[name] = export(
                model,
                example_inputs(n_tokens, start),
                dynamic_shapes=(None, None, {0: kv}),
                strict=False,
            )
    return programs


def lower(model: StaticModel, options: PteOptions) -> Lowered:
    """Quantize (if asked; in place), export both methods and lower them to one program."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass

    started = time.monotonic()
    model.eval().requires_grad_(False)
    skipped: tuple[str, ...] = ()
    if options.quant == PteQuant.Q8DA4W:
        skipped = quantize_8da4w(model)
    programs = export_methods(model)
    exported = time.monotonic()
    edge = to_edge_transform_and_lower(
        programs,
        partitioner=[XnnpackPartitioner()],
        constant_methods={
            "max_context": model.max_context,
            "prefill_chunk": model.chunk,
            "vocab_size": model.spec.vocab_size,
            "star_pte_format": PTE_FORMAT,
        },
    )
    program = edge.to_executorch(
        ExecutorchBackendConfig(
            memory_planning_pass=MemoryPlanningPass(share_mutable_buffers=True),
            emit_mutable_buffer_names=True,
            run_reinplace_pass=True,
        )
    )
    return Lowered(
        buffer=program.buffer,
        fp32_linears=skipped,
        export_seconds=round(exported - started, 1),
        lower_seconds=round(time.monotonic() - exported, 1),
    )

"""What a .pte is exported for, checked before anything is built.

Every refusal names the option and the reason (``ExportValidationError``), before a possibly
large model is constructed or a minute of lowering is spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from star.export.errors import ExportValidationError
from star.genome.spec import ArchSpec

DEFAULT_MAX_CONTEXT = 8192  # capped by the genome's context_length
DEFAULT_CHUNK = 128  # prefill tokens per call: GEMM-sized, score buffer H*chunk*L*4 bytes
GROUP_SIZE = 32  # 8da4w weight group, the block size of llama.cpp Q4_0
MAX_CHUNK = 1024
MAX_CONTEXT_LIMIT = 1 << 20


class PteQuant(str, Enum):
    """Weight/activation types of an exported program."""

    FP32 = "fp32"  # float32 weights and activations (the exactness reference)
    Q8DA4W = "8da4w"  # int8 dynamic per-token activations, int4 weights in groups of 32


@dataclass(frozen=True)
class PteOptions:
    """``max_context``: longest sequence (prompt + generated) the program holds; the KV cache has
    that many slots, but memory is touched only up to the context in use. ``prefill_chunk``:
    tokens per prefill call. ``quant``: see ``PteQuant``."""

    quant: PteQuant = PteQuant.FP32
    max_context: int = DEFAULT_MAX_CONTEXT
    prefill_chunk: int = DEFAULT_CHUNK

    @classmethod
    def for_spec(
        cls,
        spec: ArchSpec,
        *,
        quant: PteQuant | str = PteQuant.FP32,
        max_context: int | None = None,
        prefill_chunk: int = DEFAULT_CHUNK,
    ) -> PteOptions:
        """Options for ``spec``, checked; ``max_context`` None: min(8192, context_length)."""
        try:
            quant = PteQuant(quant)
        except ValueError:
            allowed = ", ".join(q.value for q in PteQuant)
            raise ExportValidationError("quant", f"{quant!r} is not one of {allowed}") from None
        if max_context is None:
            max_context = min(DEFAULT_MAX_CONTEXT, spec.context_length)
        options = cls(quant=quant, max_context=max_context, prefill_chunk=prefill_chunk)
        options.check(spec)
        return options

    def check(self, spec: ArchSpec) -> None:
        if not 2 <= self.prefill_chunk <= MAX_CHUNK:
            raise ExportValidationError(
                "prefill_chunk",
                f"{self.prefill_chunk} is outside [2, {MAX_CHUNK}] (one token: the decode method)",
            )
        if self.max_context <= self.prefill_chunk:
            raise ExportValidationError(
                "max_context",
                f"{self.max_context} must exceed one prefill chunk ({self.prefill_chunk})",
            )
        if self.max_context > min(spec.context_length, MAX_CONTEXT_LIMIT):
            raise ExportValidationError(
                "max_context",
                f"{self.max_context} exceeds the genome's context_length {spec.context_length}",
            )
        if not spec.layers:
            raise ExportValidationError("layers", "the spec has no layers")

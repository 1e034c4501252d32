"""GGUF storage types: block layouts and the one rule deciding each tensor's type.

The exporter (``star.export``) and the cost model both call ``storage_type`` so the analytic
weight bytes are the bytes in the file. Block layouts are ggml's: Q8_0 stores 32 weights as an
f16 scale + 32 int8 (34 bytes); Q4_0 as an f16 scale + 16 bytes of nibbles (18 bytes).
"""

from __future__ import annotations

import math
from enum import Enum


class Quant(str, Enum):
    F32 = "f32"
    F16 = "f16"
    Q8_0 = "q8_0"
    Q4_0 = "q4_0"

    @property
    def block_size(self) -> int:
        return 32 if self in (Quant.Q8_0, Quant.Q4_0) else 1

    @property
    def block_bytes(self) -> int:
        return {Quant.F32: 4, Quant.F16: 2, Quant.Q8_0: 34, Quant.Q4_0: 18}[self]

    def nbytes(self, shape: tuple[int, ...]) -> int:
        """Bytes of a tensor of torch ``shape`` (the last dim is ggml's ne0, the row)."""
        n = math.prod(shape)
        if n % self.block_size:
            raise ValueError(f"{n} elements are not a whole number of {self.value} blocks")
        return n // self.block_size * self.block_bytes


# tensors that llama.cpp needs in F32 whatever the requested type (norms, biases, conv kernels,
# SSM scalars, routers' biases): keyed by the last component of our parameter name
_ALWAYS_F32_SUFFIXES = ("conv.weight", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D",
                        "expert_bias", "router.weight")


def storage_type(name: str, shape: tuple[int, ...], requested: Quant) -> Quant:
    """The GGUF type of parameter ``name`` with torch ``shape`` when ``requested`` is asked for.

    Matrices (2-D, or 3-D stacked experts) take the requested type when their rows split into
    whole blocks; otherwise they fall back to F16 (or F32 when F32 was asked). Vectors (norm
    weights, biases) and the small tensors llama.cpp reads in F32 stay F32.
    """
    if requested == Quant.F32:
        return Quant.F32
    if len(shape) < 2 or name.endswith(_ALWAYS_F32_SUFFIXES):
        return Quant.F32
    if shape[-1] % requested.block_size:
        return Quant.F16
    return requested

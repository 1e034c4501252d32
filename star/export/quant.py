"""Which GGUF tensors get the requested weight type: ONE rule, shared with the cost model.

``quant_type_for(name, shape, requested)`` is the only place that decides a tensor's storage
type. It follows llama.cpp's ``llama-quantize`` eligibility rules (tensor_allows_quantization):
only ``*.weight`` tensors of 2 or 3 dims are converted; norms, biases, conv kernels (``ssm_conv1d``,
``shortconv.conv``: the CPU conv op reads F32), the MoE router (``ffn_gate_inp``), the expert
selection bias and the SSM ``ssm_a`` / ``ssm_d`` / ``ssm_dt`` vectors stay F32. A block type
(Q8_0, Q4_0: 32 values per block along ne0) needs ``ne0 % 32 == 0``; other shapes fall back to
F16, as ``llama-quantize`` does. Unlike ``llama-quantize``, the output head (``output.weight``, or
``token_embd.weight`` when tied) gets the requested type too: gguf-py cannot write Q6_K, and a
uniform rule keeps the cost model simple. Q4_0 ``token_embd`` is supported on CPU (get_rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType
from gguf.quants import quant_shape_to_byte_shape


class Quant(StrEnum):
    """Requested weight type of an export (the CLI's ``--quant``)."""

    F32 = "f32"
    F16 = "f16"
    Q8_0 = "q8_0"
    Q4_0 = "q4_0"

    @property
    def ggml_type(self) -> GGMLQuantizationType:
        return _GGML[self]

    @property
    def file_type(self) -> LlamaFileType:
        """``general.file_type``: the type most weights have."""
        return _FTYPE[self]


_GGML = {
    Quant.F32: GGMLQuantizationType.F32,
    Quant.F16: GGMLQuantizationType.F16,
    Quant.Q8_0: GGMLQuantizationType.Q8_0,
    Quant.Q4_0: GGMLQuantizationType.Q4_0,
}
_FTYPE = {
    Quant.F32: LlamaFileType.ALL_F32,
    Quant.F16: LlamaFileType.MOSTLY_F16,
    Quant.Q8_0: LlamaFileType.MOSTLY_Q8_0,
    Quant.Q4_0: LlamaFileType.MOSTLY_Q4_0,
}

# Name fragments of weights that always stay F32 (llama-quantize's exclusions that apply here).
KEEP_F32_FRAGMENTS: tuple[str, ...] = (
    "_norm.weight",  # attn_norm, ffn_norm, output_norm, token_embd_norm, q/k norms, ssm_norm
    "ffn_gate_inp.weight",  # MoE router
    "ssm_conv1d",  # Mamba-2 depthwise conv kernel
    "shortconv.conv.weight",  # LFM2 depthwise conv kernel
)


def as_quant(requested: Quant | str) -> Quant:
    try:
        return Quant(requested.lower() if isinstance(requested, str) else requested)
    except ValueError:
        names = ", ".join(q.value for q in Quant)
        raise ValueError(f"unknown quant {requested!r}; choose one of {names}") from None


def quant_type_for(
    tensor_name: str, shape: Sequence[int], requested: Quant | str
) -> GGMLQuantizationType:
    """Storage type of GGUF tensor ``tensor_name`` in an export of type ``requested``.

    ``shape`` is in ggml order: ``shape[0]`` is ne0, the contiguous row length (the INPUT width of
    a weight matrix: ``{d_model, ffn}`` for ``ffn_up``), as GGUF and ``GGUFReader`` report it.
    """
    quant = as_quant(requested)
    if quant == Quant.F32:
        return GGMLQuantizationType.F32
    eligible = (
        tensor_name.endswith(".weight")
        and 2 <= len(shape) <= 3
        and not any(f in tensor_name for f in KEEP_F32_FRAGMENTS)
    )
    if not eligible:
        return GGMLQuantizationType.F32
    qtype = quant.ggml_type
    block, _ = GGML_QUANT_SIZES[qtype]
    if shape[0] % block:
        return GGMLQuantizationType.F16
    return qtype


def tensor_nbytes(shape: Sequence[int], qtype: GGMLQuantizationType) -> int:
    """Bytes of tensor data for a ggml-order ``shape`` stored as ``qtype`` (no padding)."""
    block, type_size = GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    return n // block * type_size


def encode(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """float32 numpy array (numpy layout) -> the array GGUFWriter stores for ``qtype``."""
    if qtype == GGMLQuantizationType.F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    if qtype == GGMLQuantizationType.F16:
        return np.ascontiguousarray(data, dtype=np.float16)
    from gguf.quants import quantize

    out = quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)
    assert out.shape == quant_shape_to_byte_shape(data.shape, qtype)
    return out

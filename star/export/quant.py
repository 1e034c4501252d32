"""The weight types an export offers: ONE ``Quant`` enum for the exporter, the cost model, the
search config and the CLI (``star.cost.Quant`` is this enum).

F32 and F16 are written by our own writer (``star.export.writer``; byte-identical to llama.cpp's
``convert_hf_to_gguf.py``). Every other type is a mixture of the pinned build's ``llama-quantize``
applied to our F16 file -- the route people ship models by (HF -> F16 GGUF -> llama-quantize) -- so
each file carries exactly the stock tool's per-tensor choices (a tied head at Q6_K, more bits for
some ``attn_v`` / ``ffn_down``, fallbacks for rows that do not fill a block). Those choices are
ported, for the cost model and for checking the tool's output, in ``star.export.mixture``.

Offered: every type the pinned ``llama-quantize`` lists that it will write without an importance
matrix and that gguf-py can read back (``NOT_OFFERED`` says why the others are not). This module
imports nothing heavy, so the CLI can build its ``--quant`` choices from it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gguf import GGMLQuantizationType, LlamaFileType


class Quant(StrEnum):
    """Requested weight type of an export (``--quant``); values are llama-quantize's names in
    lower case. Roughly from most to fewest bits per weight."""

    F32 = "f32"
    F16 = "f16"
    BF16 = "bf16"
    Q8_0 = "q8_0"
    Q6_K = "q6_k"
    Q5_K_M = "q5_k_m"
    Q5_K_S = "q5_k_s"
    Q5_1 = "q5_1"
    Q5_0 = "q5_0"
    Q4_K_M = "q4_k_m"  # what most people ship
    Q4_K_S = "q4_k_s"
    Q4_1 = "q4_1"
    Q4_0 = "q4_0"
    IQ4_NL = "iq4_nl"
    IQ4_XS = "iq4_xs"
    Q3_K_L = "q3_k_l"
    Q3_K_M = "q3_k_m"
    Q3_K_S = "q3_k_s"
    IQ3_M = "iq3_m"
    IQ3_S = "iq3_s"
    Q2_K = "q2_k"
    TQ2_0 = "tq2_0"  # ternary: meant for ternary-trained weights
    TQ1_0 = "tq1_0"
    Q1_0 = "q1_0"  # binary; rows must be multiples of 128 (llama-quantize has no fallback)
    MXFP4_MOE = "mxfp4_moe"  # MoE experts MXFP4, everything else Q8_0

    @property
    def tool_name(self) -> str:
        """The type argument of ``llama-quantize``."""
        return self.value.upper()

    @property
    def by_tool(self) -> bool:
        """True when the stock ``llama-quantize`` makes the file (all but F32 and F16)."""
        return self not in (Quant.F32, Quant.F16)

    @property
    def written(self) -> Quant:
        """The type our own writer produces on the way: F32 for F32, else F16 (the tool's input)."""
        return Quant.F32 if self == Quant.F32 else Quant.F16

    @property
    def base_type(self) -> GGMLQuantizationType:
        """The type most weights get (llama.cpp's ``llama_ftype_get_default_type``)."""
        from gguf import GGMLQuantizationType

        return GGMLQuantizationType[_BASE[self]]

    @property
    def file_type(self) -> LlamaFileType:
        """``general.file_type`` of the file (llama.cpp's ``llama_ftype``)."""
        from gguf import LlamaFileType

        return LlamaFileType(_FTYPE[self])


# llama_ftype -> (LLAMA_FTYPE value, default ggml type name), from include/llama.h and
# src/llama-quant.cpp (llama_ftype_get_default_type) of the pinned llama.cpp.
_FTYPE_AND_BASE: dict[Quant, tuple[int, str]] = {
    Quant.F32: (0, "F32"),
    Quant.F16: (1, "F16"),
    Quant.BF16: (32, "BF16"),
    Quant.Q8_0: (7, "Q8_0"),
    Quant.Q6_K: (18, "Q6_K"),
    Quant.Q5_K_M: (17, "Q5_K"),
    Quant.Q5_K_S: (16, "Q5_K"),
    Quant.Q5_1: (9, "Q5_1"),
    Quant.Q5_0: (8, "Q5_0"),
    Quant.Q4_K_M: (15, "Q4_K"),
    Quant.Q4_K_S: (14, "Q4_K"),
    Quant.Q4_1: (3, "Q4_1"),
    Quant.Q4_0: (2, "Q4_0"),
    Quant.IQ4_NL: (25, "IQ4_NL"),
    Quant.IQ4_XS: (30, "IQ4_XS"),
    Quant.Q3_K_L: (13, "Q3_K"),
    Quant.Q3_K_M: (12, "Q3_K"),
    Quant.Q3_K_S: (11, "Q3_K"),
    Quant.IQ3_M: (27, "IQ3_S"),
    Quant.IQ3_S: (26, "IQ3_S"),
    Quant.Q2_K: (10, "Q2_K"),
    Quant.TQ2_0: (37, "TQ2_0"),
    Quant.TQ1_0: (36, "TQ1_0"),
    Quant.Q1_0: (40, "Q1_0"),
    Quant.MXFP4_MOE: (38, "MXFP4"),
}
_FTYPE = {q: v[0] for q, v in _FTYPE_AND_BASE.items()}
_BASE = {q: v[1] for q, v in _FTYPE_AND_BASE.items()}

# llama-quantize types we do not offer, and why (named in the error for a request of one).
_IMATRIX = "llama-quantize refuses it without an importance matrix (calibration data)"
NOT_OFFERED: dict[str, str] = {
    **{n: _IMATRIX for n in ("iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq3_xxs",
                             "iq3_xs", "q2_k_s")},
    "q2_0": "gguf-py 0.19 cannot read the type back, so the file could not be checked",
    "copy": "not a weight type (llama-quantize copies the input)",
    "q3_k": "llama-quantize's alias of q3_k_m: ask for q3_k_m",
    "q4_k": "llama-quantize's alias of q4_k_m: ask for q4_k_m",
    "q5_k": "llama-quantize's alias of q5_k_m: ask for q5_k_m",
}  # fmt: skip


class UnknownQuant(ValueError):
    """A requested weight type that is not offered; the message names the choices."""


def as_quant(requested: Quant | str) -> Quant:
    """``requested`` (any case) as a ``Quant``, or ``UnknownQuant`` naming the choices."""
    if isinstance(requested, Quant):
        return requested
    key = str(requested).strip().lower()
    try:
        return Quant(key)
    except ValueError:
        names = ", ".join(q.value for q in Quant)
        why = f" ({NOT_OFFERED[key]})" if key in NOT_OFFERED else ""
        raise UnknownQuant(f"unknown quant {requested!r}{why}; choose one of: {names}") from None

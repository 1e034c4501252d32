"""Which type every GGUF tensor is stored as, per ``Quant``: THE rule, for exporter and cost model.

Two writers decide types, and both are here:

- our writer (F32, F16 files: ``written_type``): ``*.weight`` matrices of 2-3 dims take the
  requested type; norms, conv kernels, the MoE router, biases and the SSM vectors stay F32 (what
  llama.cpp's ``convert_hf_to_gguf.py`` does; our F16 files are byte-identical to its output);
- the stock ``llama-quantize`` (every other ``Quant``), applied to our F16 file:
  ``tensor_types`` is a port of ``llama_tensor_get_type`` in src/llama-quant.cpp of the pinned
  llama.cpp (commit 0c1e57098), restricted to the branches our architectures and offered types can
  reach (no Falcon / GLM5 / BailingMoE3 rules, no imatrix-only mixtures, no user overrides).

The llama-quantize rules, in short: a tensor is quantized only if its name ends in ``weight``, it
has >= 2 dims and it is not a norm, router or conv kernel (``allows_quantization``); the output
head (``output.weight``, or ``token_embd.weight`` when there is no ``output.weight``: a tied head)
gets Q6_K, or Q8_0 when its row is not a whole number of the base type's blocks; mixtures give
more bits to some ``attn_v`` / ``ffn_down`` / ``attn_output`` by layer position (``use_more_bits``:
the first and last eighth and every third layer between), by GQA ratio and by expert count;
finally a type whose block does not divide the row (``ne0``) falls back (Q4_K -> Q5_0, Q5_K ->
Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K/TQ -> Q4_0, IQ -> IQ4_NL) and then to F16. Tensors are visited in
the loader's order (block number, then name), which is what its layer counters count.

``tests/export/test_quant_tool.py`` checks this port against the tool, type by type, for every
export target and offered type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUFValueType
from gguf import GGMLQuantizationType as QT

from star.export import names as N
from star.export.errors import ExportValidationError
from star.export.quant import Quant, as_quant

Shape = tuple[int, ...]
Metadata = Mapping[str, tuple[object, GGUFValueType]]

# Name fragments of weights our writer always stores F32 (llama-quantize leaves them alone too).
KEEP_F32_FRAGMENTS: tuple[str, ...] = (
    "_norm.weight",  # attn_norm, ffn_norm, output_norm, token_embd_norm, q/k norms, ssm_norm
    "ffn_gate_inp.weight",  # MoE router
    "ssm_conv1d",  # Mamba-2 depthwise conv kernel (the CPU conv op reads F32)
    "shortconv.conv.weight",  # LFM2 depthwise conv kernel
)
# Name fragments llama-quantize never quantizes (tensor_allows_quantization, all architectures).
_NEVER_QUANTIZED: tuple[str, ...] = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
    "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
    "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
    "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd",
    "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook",
    "mm.a.code_embd",
)  # fmt: skip
_NEVER_QUANTIZED_NAMES = ("position_embd.weight", "token_types.weight")

# tensor_type_fallback: a type whose block does not divide the row -> this one (then F16).
_FALLBACK: dict[QT, QT] = {
    **dict.fromkeys((QT.IQ1_S, QT.IQ1_M, QT.IQ2_XXS, QT.IQ2_XS, QT.IQ2_S, QT.IQ3_XXS, QT.IQ3_S,
                     QT.IQ4_XS), QT.IQ4_NL),
    **dict.fromkeys((QT.Q2_K, QT.Q3_K, QT.TQ1_0, QT.TQ2_0), QT.Q4_0),
    QT.Q4_K: QT.Q5_0,
    QT.Q5_K: QT.Q5_1,
    QT.Q6_K: QT.Q8_0,
}  # fmt: skip


class UnsupportedQuant(ExportValidationError):
    """llama-quantize cannot store this tensor in the requested mixture (it would abort)."""


@dataclass(frozen=True)
class QuantModel:
    """What llama-quantize's mixture rules read from a model besides tensor names and shapes.

    ``n_head`` / ``n_head_kv`` are block 0's (``hparams.n_gqa()`` is asked with no layer, i.e.
    layer 0: 0 when block 0 is not attention).
    """

    arch: str
    n_layer: int  # GGUF block_count (the ffn_* counters' total)
    n_head: int = 0
    n_head_kv: int = 0
    n_expert: int = 0

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @property
    def is_70b(self) -> bool:
        """llama.cpp's LLM_TYPE_70B (attn_v gets more bits): only llama, 80 blocks, GQA."""
        return self.arch == "llama" and self.n_layer == 80 and self.n_head != self.n_head_kv

    @classmethod
    def from_metadata(cls, arch: str, meta: Metadata) -> QuantModel:
        """Read the way llama.cpp's loader reads these keys (head_count_kv defaults to
        head_count; a per-layer array contributes its block-0 entry)."""

        def first(template: str, default: int) -> int:
            key = template.format(arch=arch)
            if key not in meta:
                return default
            value = meta[key][0]
            scalar = value[0] if isinstance(value, list) else value
            assert isinstance(scalar, int), (key, value)
            return scalar

        n_head = first(N.K_HEADS, 0)
        return cls(
            arch=arch,
            n_layer=first(N.K_BLOCKS, 0),
            n_head=n_head,
            n_head_kv=first(N.K_HEADS_KV, n_head),
            n_expert=first(N.K_EXPERTS, 0),
        )


def block_size(qtype: QT) -> int:
    return GGML_QUANT_SIZES[qtype][0]


def tensor_nbytes(shape: Sequence[int], qtype: QT) -> int:
    """Bytes of tensor data of ``shape`` (any order: only the count matters) as ``qtype``."""
    block, type_size = GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    return n // block * type_size


def written_type(tensor_name: str, shape: Sequence[int], quant: Quant | str) -> QT:
    """Type of a tensor in the file OUR writer produces for ``quant`` (F32, or F16 otherwise)."""
    if as_quant(quant).written == Quant.F32:
        return QT.F32
    eligible = (
        tensor_name.endswith(".weight")
        and 2 <= len(shape) <= 3
        and not any(f in tensor_name for f in KEEP_F32_FRAGMENTS)
    )
    return QT.F16 if eligible else QT.F32


def _n_dims(shape: Sequence[int]) -> int:
    """ggml_n_dims: trailing dims of size 1 do not count."""
    for i in range(len(shape) - 1, 0, -1):
        if shape[i] > 1:
            return i + 1
    return 1


def allows_quantization(tensor_name: str, shape: Sequence[int]) -> bool:
    """llama-quantize's ``tensor_allows_quantization`` (default parameters)."""
    return (
        _n_dims(shape) >= 2
        and tensor_name.endswith("weight")
        and not any(f in tensor_name for f in _NEVER_QUANTIZED)
        and tensor_name not in _NEVER_QUANTIZED_NAMES
    )


def _category(name: str) -> str:
    """tensor_get_category: ``output``, ``token_embd``, ``attn_v``, ``attn_k``, ... or ``other``."""
    if name == N.OUTPUT:
        return "output"
    if name == N.TOKEN_EMBD:
        return "token_embd"
    for fragment, cat in (
        ("attn_qkv.weight", "attn_v"), ("attn_kv_b.weight", "attn_v"),  # attn_v-like
        ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
        ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"),
        ("ffn_down", "ffn_down"),
    ):  # fmt: skip
        if fragment in name:
            return cat
    return "other"


_BLOCK = re.compile(r"blk\.(\d+)\.")


def _block(name: str) -> int:
    m = _BLOCK.match(name)
    return int(m.group(1)) if m else -1


def loader_order(names: Sequence[str]) -> list[str]:
    """llama.cpp's ``weights_map`` order (weight_name_comparer): block number, then name."""
    return sorted(names, key=lambda n: (_block(n), n))


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


class _Mixture:
    """One llama-quantize run's state: the counters it advances tensor by tensor."""

    def __init__(self, quant: Quant, model: QuantModel, n_attention_wv: int, tied: bool) -> None:
        self.q = quant
        self.m = model
        self.n_attention_wv = n_attention_wv
        self.tied = tied
        self.i_attention_wv = 0
        self.i_ffn_down = 0

    def _layer(self, counter: int, name: str) -> tuple[int, int]:
        """layer_info: the counter, or with experts the block parsed from the name."""
        n = self.m.n_layer
        if max(1, self.m.n_expert) > 1:
            i = _block(name)
            if not 0 <= i < n:
                raise UnsupportedQuant(name, f"llama-quantize: bad layer {i}, must be in [0, {n})")
            return i, n
        return counter, n

    def choose(self, name: str, shape: Sequence[int]) -> QT:
        """llama_tensor_get_type for an eligible tensor (the default type is quantized)."""
        new = self._mixture(name, shape, self.q.base_type)
        return self._fallback(name, shape, new)

    def _mixture(self, name: str, shape: Sequence[int], new: QT) -> QT:  # noqa: C901, PLR0911, PLR0912
        q, m, cat = self.q, self.m, _category(name)
        if cat == "output" or (self.tied and cat == "token_embd"):
            if q == Quant.MXFP4_MOE or shape[0] % block_size(new):
                return QT.Q8_0
            return new if new == QT.Q8_0 else QT.Q6_K
        if q == Quant.MXFP4_MOE:
            return QT.MXFP4 if len(shape) > 2 and shape[2] > 1 else QT.Q8_0
        if cat == "token_embd":
            return QT.Q4_K if q in (Quant.TQ1_0, Quant.TQ2_0) else new
        if cat == "attn_v":
            gqa4 = m.n_gqa >= 4
            i, n = self.i_attention_wv, self.n_attention_wv
            if q == Quant.Q2_K:
                new = QT.Q4_K if gqa4 else QT.Q3_K
            elif q == Quant.IQ3_S and gqa4:
                new = QT.Q4_K
            elif q == Quant.IQ3_M:
                new = QT.Q4_K
            elif q == Quant.Q3_K_M:
                new = QT.Q5_K if i < 2 else QT.Q4_K
            elif q == Quant.Q3_K_L:
                new = QT.Q5_K
            elif q in (Quant.IQ4_NL, Quant.IQ4_XS) and gqa4:
                new = QT.Q5_K
            elif q in (Quant.Q4_K_M, Quant.Q5_K_M) and _use_more_bits(i, n):
                new = QT.Q6_K
            elif q == Quant.Q4_K_S and i < 4:
                new = QT.Q5_K
            if m.is_70b and new in (QT.Q3_K, QT.Q4_K):
                new = QT.Q5_K
            if m.n_expert == 8:
                new = QT.Q8_0
            self.i_attention_wv += 1
            return new
        if cat == "attn_k":
            return QT.Q8_0 if m.n_expert == 8 else new
        if cat == "ffn_down":
            i, n = self._layer(self.i_ffn_down, name)
            self.i_ffn_down += 1
            if q == Quant.Q2_K:
                return QT.Q3_K
            if q == Quant.Q3_K_M:
                return QT.Q5_K if i < n // 16 else QT.Q4_K  # (Q3_K only for Falcon)
            if q == Quant.IQ3_M and (i < n // 8 or (m.n_expert == 8 and _use_more_bits(i, n))):
                return QT.Q4_K
            if q == Quant.Q3_K_L:
                return QT.Q5_K
            if q == Quant.Q4_K_M:
                return QT.Q6_K if _use_more_bits(i, n) else new
            if i < n // 8 and q in (Quant.IQ4_NL, Quant.IQ4_XS):  # (no imatrix)
                return QT.Q5_K
            if q == Quant.Q5_K_M and _use_more_bits(i, n):
                return QT.Q6_K
            if q == Quant.Q4_K_S and i < n // 8:
                return QT.Q5_K
            return new
        if cat == "attn_output":
            if m.n_expert == 8:
                more = (Quant.Q2_K, Quant.Q3_K_S, Quant.Q3_K_M, Quant.IQ4_NL, Quant.Q4_K_S,
                        Quant.Q4_K_M, Quant.IQ3_S, Quant.IQ3_M, Quant.IQ4_XS)  # fmt: skip
                return QT.Q5_K if q in more else new
            bumped = {Quant.Q2_K: QT.Q3_K, Quant.Q3_K_M: QT.Q4_K, Quant.Q3_K_L: QT.Q5_K,
                      Quant.IQ3_M: QT.Q4_K}  # fmt: skip
            return bumped.get(q, new)
        if cat in ("ffn_gate", "ffn_up") and max(1, m.n_expert) > 1:
            self._layer(0, name)  # layer_info still checks the block (no offered type uses it)
        return new

    @staticmethod
    def _fallback(name: str, shape: Sequence[int], new: QT) -> QT:
        """tensor_type_fallback: a row that is not a whole number of blocks."""
        ncols, qk = shape[0], block_size(new)
        if ncols % qk == 0:
            return new
        if new in _FALLBACK:
            out = _FALLBACK[new]
        elif qk <= 32:
            out = new
        else:
            raise UnsupportedQuant(
                name,
                f"row of {ncols} is not a multiple of {new.name}'s block of {qk} and "
                "llama-quantize has no fallback for it (it would abort)",
            )
        return out if ncols % block_size(out) == 0 else QT.F16


def tensor_types(
    tensors: Sequence[tuple[str, Shape]], quant: Quant | str, model: QuantModel
) -> dict[str, QT]:
    """Storage type of every GGUF tensor (name, ggml shape) of one file exported as ``quant``.

    ``shape[0]`` is ne0, the contiguous row (the INPUT width of a weight matrix). Raises
    ``UnsupportedQuant`` where llama-quantize would abort (Q1_0 on a row that is not a multiple
    of 128).
    """
    q = as_quant(quant)
    shapes = dict(tensors)
    types = {name: written_type(name, shape, q) for name, shape in tensors}
    if not q.by_tool:
        return types
    names = loader_order(list(shapes))
    mixture = _Mixture(
        q,
        model,
        n_attention_wv=sum(_category(n) == "attn_v" for n in names),
        tied=N.OUTPUT not in shapes,
    )
    quantized = block_size(q.base_type) > 1
    for name in names:
        shape = shapes[name]
        if allows_quantization(name, shape):
            types[name] = mixture.choose(name, shape) if quantized else q.base_type
    return types


def default_type(tensor_name: str, shape: Sequence[int], quant: Quant | str) -> QT:
    """The type a tensor's ROLE gets in ``quant``, without the model around it: no position,
    GQA or expert-count bumps, and a ``token_embd`` taken as untied (its head bumps it to Q6_K).

    A per-tensor lower bound of ``tensor_types`` for every offered mixture (each bump adds bits;
    tested), for callers that have a tensor but no model (a budget floor before any genome).
    """
    q = as_quant(quant)
    if not q.by_tool or not allows_quantization(tensor_name, shape):
        return written_type(tensor_name, shape, q)
    if block_size(q.base_type) == 1:
        return q.base_type
    alone = _Mixture(q, QuantModel(arch="", n_layer=1), n_attention_wv=1, tied=False)
    new = q.base_type
    if q == Quant.MXFP4_MOE or _category(tensor_name) in ("output", "token_embd"):
        new = alone._mixture(tensor_name, shape, new)  # these rules need no model
    return alone._fallback(tensor_name, shape, new)


def type_names(types: Mapping[str, QT]) -> dict[str, str]:
    """``{tensor: "Q6_K"}``: for messages and JSON."""
    return {name: qt.name for name, qt in types.items()}

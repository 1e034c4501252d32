"""What each tensor is stored as in a GGUF file of a given ``Quant``, for the cost model.

The rule has one home, ``star.export.mixture`` (our writer's F32/F16 rule and llama-quantize's
per-tensor mixtures); ``Quant`` is ``star.export.quant.Quant``. This module applies them to a
spec: ``stored_tensors(spec, quant)`` lays the spec out exactly as the exporter would
(``star.export.gguf_layout``, same table and block numbering) and types every tensor, so
``weight_bytes`` equals the tensor bytes of the exported file. A spec no runtime can run (the
exporter refuses it) is laid out approximately, one GGUF block per layer with the obvious names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from star.cost.params import Tensor, tensors
from star.export import UnsupportedGenome, gguf_layout
from star.export.layout import GgufLayout, LayoutTensor
from star.export.mixture import QuantModel, default_type, tensor_nbytes
from star.export.quant import Quant, as_quant
from star.genome.spec import ArchSpec, AttentionSpec, MoESpec, ShortConvSpec, SSMSpec

__all__ = ["Quant", "StorageType", "StoredTensor", "storage_type", "stored_tensors"]


@dataclass(frozen=True)
class StorageType:
    """One ggml storage type (``StorageType(Q6_K)``), with its byte count per tensor."""

    ggml: GGMLQuantizationType

    @property
    def name(self) -> str:
        return self.ggml.name

    def nbytes(self, shape: tuple[int, ...]) -> int:
        """Bytes of a tensor of ``shape`` (torch or ggml order: only the count matters)."""
        block, type_size = GGML_QUANT_SIZES[self.ggml]
        n = math.prod(shape)
        if n % block:
            raise ValueError(f"{n} elements are not a whole number of {self.name} blocks")
        return n // block * type_size


@dataclass(frozen=True)
class StoredTensor:
    """One GGUF tensor of a spec's export and how it is stored."""

    gguf_name: str
    source: str  # our parameter name ("" = synthesised by the exporter)
    shape: tuple[int, ...]  # ggml order
    type: StorageType

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.shape, self.type.ggml)


def stored_tensors(spec: ArchSpec, quant: Quant | str) -> list[StoredTensor]:
    """Every tensor of ``spec``'s GGUF file in ``quant``, typed by the one rule.

    Raises ``UnsupportedQuant`` where llama-quantize would abort (Q1_0 on rows that are not
    multiples of 128).
    """
    layout = _layout(spec)
    types = layout.types(as_quant(quant))
    return [StoredTensor(t.name, t.source, t.shape, StorageType(types[t.name]))
            for t in layout.tensors]


def storage_type(name: str, shape: tuple[int, ...], requested: Quant | str) -> StorageType:
    """The type of OUR parameter ``name`` (torch ``shape``) judged without its model.

    Position, GQA and expert-count bumps of llama-quantize need the whole model: this gives the
    role's default (``star.export.mixture.default_type``), a lower bound per tensor; an
    ``embed.weight`` counts as an untied token embedding (a tied one is the output head: Q6_K in
    most mixtures). Use ``stored_tensors`` / ``weight_bytes`` for the exact file.
    """
    gguf_name, ggml_shape = _approximate_name(name, shape)
    return StorageType(default_type(gguf_name, ggml_shape, requested))


@lru_cache(maxsize=512)
def _layout(spec: ArchSpec) -> GgufLayout:
    shapes = {t.name: t.shape for t in tensors(spec)}
    try:
        return gguf_layout(spec, shapes)
    except UnsupportedGenome:
        return _approximate_layout(spec)


# Our parameter suffix -> GGUF name (``{b}`` = block), for specs no target runs.
_MIXER_NAMES = {
    "attention": {"q_proj.weight": "attn_q.weight", "k_proj.weight": "attn_k.weight",
                  "v_proj.weight": "attn_v.weight", "o_proj.weight": "attn_output.weight",
                  "q_norm.weight": "attn_q_norm.weight", "k_norm.weight": "attn_k_norm.weight"},
    "shortconv": {"in_proj.weight": "shortconv.in_proj.weight",
                  "conv.weight": "shortconv.conv.weight",
                  "out_proj.weight": "shortconv.out_proj.weight"},
    "ssm": {"in_proj.weight": "ssm_in.weight", "conv1d.weight": "ssm_conv1d.weight",
            "conv1d.bias": "ssm_conv1d.bias", "dt_bias": "ssm_dt.bias", "A_log": "ssm_a",
            "D": "ssm_d", "norm.weight": "ssm_norm.weight", "out_proj.weight": "ssm_out.weight"},
}  # fmt: skip
_OTHER_NAMES = {
    "mixer_norm.weight": "attn_norm.weight", "mixer_norm.bias": "attn_norm.bias",
    "ffn_norm.weight": "ffn_norm.weight", "ffn_norm.bias": "ffn_norm.bias",
    "ffn.gate.weight": "ffn_gate.weight", "ffn.up.weight": "ffn_up.weight",
    "ffn.down.weight": "ffn_down.weight", "ffn.router.weight": "ffn_gate_inp.weight",
    "ffn.expert_bias": "exp_probs_b.bias", "ffn.gate_exps": "ffn_gate_exps.weight",
    "ffn.up_exps": "ffn_up_exps.weight", "ffn.down_exps": "ffn_down_exps.weight",
}  # fmt: skip
_MODEL_NAMES = {"embed.weight": "token_embd.weight", "lm_head.weight": "output.weight",
                "final_norm.weight": "output_norm.weight", "final_norm.bias": "output_norm.bias"}


def _mixer_kind(spec: ArchSpec | None, layer: int) -> str:
    m = spec.layers[layer].mixer if spec is not None else None
    if isinstance(m, ShortConvSpec):
        return "shortconv"
    if isinstance(m, SSMSpec):
        return "ssm"
    return "attention"  # attention, and linear attention's q/k/v/o projections


def _approximate_name(
    name: str, shape: tuple[int, ...], spec: ArchSpec | None = None
) -> tuple[str, tuple[int, ...]]:
    """(GGUF-like name, ggml shape) of one of our parameters, without a target."""
    ggml_shape = tuple(reversed(shape))
    if name in _MODEL_NAMES:
        return _MODEL_NAMES[name], ggml_shape
    parts = name.split(".", 2)
    if len(parts) < 3 or parts[0] != "layers":
        return name, ggml_shape
    block, rest = int(parts[1]), parts[2]
    if rest.startswith("mixer."):
        table = _MIXER_NAMES[_mixer_kind(spec, block)]
        suffix = rest[len("mixer."):]
        if suffix not in table:  # no spec given: guess the kind from the suffix
            table = next((t for t in _MIXER_NAMES.values() if suffix in t), table)
        return f"blk.{block}.{table.get(suffix, suffix)}", ggml_shape
    return f"blk.{block}.{_OTHER_NAMES.get(rest, rest)}", ggml_shape


def _approximate_layout(spec: ArchSpec) -> GgufLayout:
    out: list[LayoutTensor] = []
    for t in tensors(spec):
        gguf_name, shape = _approximate_name(t.name, t.shape, spec)
        out.append(LayoutTensor(gguf_name, shape, t.name))
    layer0 = spec.layers[0].mixer if spec.layers else None
    attns = [la.mixer for la in spec.layers if isinstance(la.mixer, AttentionSpec)]
    experts = [la.channel.n_experts for la in spec.layers if isinstance(la.channel, MoESpec)]
    model = QuantModel(
        arch="",
        n_layer=spec.n_layers,
        n_head=attns[0].n_heads if attns else 0,
        n_head_kv=layer0.n_kv_heads if isinstance(layer0, AttentionSpec) else 0,
        n_expert=max(experts, default=0),
    )
    return GgufLayout("", tuple(out), model)


def source_tensors(spec: ArchSpec) -> dict[str, Tensor]:
    """Our parameters by name (what ``StoredTensor.source`` refers to)."""
    return {t.name: t for t in tensors(spec)}

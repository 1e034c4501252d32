"""The GGUF file of a spec without its weights: tensor names, ggml shapes, and what the
quantization rules read (``QuantModel``). This is what the cost model prices, so that its weight
bytes are the bytes of the file the exporter writes (same table, same rules).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gguf import GGMLQuantizationType

from star.export.mixture import QuantModel, tensor_nbytes, tensor_types
from star.export.quant import Quant
from star.export.targets import Target, block_layout, check_exportable
from star.export.tensors import slot_shape, slots
from star.genome.spec import ArchSpec, AttentionSpec, MoESpec


@dataclass(frozen=True)
class LayoutTensor:
    name: str  # GGUF name
    shape: tuple[int, ...]  # ggml order (ne0 first)
    source: str  # our parameter it is made from ("" = synthesised, e.g. nemotron_h's no-op block)


@dataclass(frozen=True)
class GgufLayout:
    arch: str
    tensors: tuple[LayoutTensor, ...]  # file order
    model: QuantModel

    def types(self, quant: Quant | str) -> dict[str, GGMLQuantizationType]:
        """Storage type of every tensor (``star.export.mixture.tensor_types``)."""
        return tensor_types([(t.name, t.shape) for t in self.tensors], quant, self.model)

    def nbytes(self, quant: Quant | str) -> int:
        """Tensor data bytes of the file (without header and alignment padding)."""
        types = self.types(quant)
        return sum(tensor_nbytes(t.shape, types[t.name]) for t in self.tensors)


def quant_model(spec: ArchSpec, target: Target) -> QuantModel:
    """The hyperparameters llama-quantize reads, as ``star.export.metadata`` writes them
    (tests check equality with ``QuantModel.from_metadata`` of the real metadata)."""
    mixer_bid, _, n_blocks = block_layout(spec, target)
    attns = [la for la in spec.layers if isinstance(la.mixer, AttentionSpec)]
    moes = [la.channel for la in spec.layers if isinstance(la.channel, MoESpec)]
    n_head = n_kv0 = 0
    if attns:
        first = attns[0].mixer
        assert isinstance(first, AttentionSpec)
        n_head = first.n_heads
        for la in attns:
            if mixer_bid[la.index] == 0:
                assert isinstance(la.mixer, AttentionSpec)
                n_kv0 = la.mixer.n_kv_heads
    elif target.name == "nemotron_h":
        n_head = n_kv0 = 1  # block 0: the no-op attention block
    return QuantModel(arch=target.name, n_layer=n_blocks, n_head=n_head, n_head_kv=n_kv0,
                      n_expert=moes[0].n_experts if moes else 0)


def gguf_layout(
    spec: ArchSpec, shapes: Mapping[str, Sequence[int]], target: Target | None = None
) -> GgufLayout:
    """The layout of ``spec``'s export; ``shapes`` maps our parameter names to torch shapes
    (``star.cost.tensors`` or a state dict's). Raises ``UnsupportedGenome`` like the exporter."""
    target = target or check_exportable(spec)
    out = []
    for slot in slots(spec, target):
        src = shapes.get(slot.source) if slot.has_source else None
        shape = slot_shape(slot, tuple(src) if src is not None else None)
        out.append(LayoutTensor(slot.name, shape, slot.source if src is not None else ""))
    return GgufLayout(target.name, tuple(out), quant_model(spec, target))

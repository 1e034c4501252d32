"""Turn a ``star.nn`` state dict into the GGUF tensors of a target (float32, numpy layout).

Every mapping comes from the table in ``star.export.names``; the transforms below are the only
arithmetic the exporter does to weights (all exact: re-indexing, reshapes, and ``-exp`` for the
Mamba-2 ``A``, which llama.cpp stores instead of ``A_log``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from star.export import names as N
from star.export.errors import ExportValidationError
from star.export.targets import Target, block_layout
from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    ChannelMixer,
    LayerSpec,
    MoESpec,
    ShortConvSpec,
    SSMSpec,
)


@dataclass(frozen=True)
class PlannedTensor:
    name: str  # GGUF name
    data: np.ndarray  # float32, numpy layout (ggml shape = reversed)
    source: str  # our parameter it came from ("" = synthesised, e.g. a zero expert bias)

    @property
    def ggml_shape(self) -> tuple[int, ...]:
        return tuple(reversed(self.data.shape))


def permute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Rotate-half (NEOX) q/k projection rows -> interleaved-RoPE rows, per head (FACTS.md).

    Row i of a head (i < hd/2) pairs with row i + hd/2 in rotate-half RoPE; interleaved RoPE pairs
    rows 2i and 2i+1 at the same frequency, so row i moves to 2i and row i + hd/2 to 2i + 1.
    """
    rows, cols = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, 2, hd // 2, cols).swapaxes(1, 2).reshape(rows, cols)


Ctx = dict[str, Any]  # layer spec, model spec, ...
Transform = Callable[[np.ndarray | None, Ctx], np.ndarray]


def _copy(w: np.ndarray | None, ctx: Ctx) -> np.ndarray:
    assert w is not None
    return w


def _squeeze_conv(w: np.ndarray | None, ctx: Ctx) -> np.ndarray:
    assert w is not None
    if w.ndim != 3 or w.shape[1] != 1:
        raise ExportValidationError(ctx["source"], f"expected a (C, 1, K) kernel, got {w.shape}")
    return w[:, 0, :]


def _permute_q(w: np.ndarray | None, ctx: Ctx) -> np.ndarray:
    assert w is not None
    return permute_rope_rows(w, ctx["layer"].mixer.n_heads)


def _permute_k(w: np.ndarray | None, ctx: Ctx) -> np.ndarray:
    assert w is not None
    return permute_rope_rows(w, ctx["layer"].mixer.n_kv_heads)


def _neg_exp_column(w: np.ndarray | None, ctx: Ctx) -> np.ndarray:
    assert w is not None
    return (-np.exp(w.astype(np.float64))).astype(np.float32).reshape(-1, 1)


def _column(w: np.ndarray | None, ctx: Ctx) -> np.ndarray:
    assert w is not None
    return w.reshape(-1, 1)


def _group_rows(w: np.ndarray | None, ctx: Ctx) -> np.ndarray:
    assert w is not None
    g = ctx["layer"].mixer.n_groups
    return w.reshape(g, -1)


def _expert_bias_or_zeros(w: np.ndarray | None, ctx: Ctx) -> np.ndarray:
    if w is not None:
        return w
    channel = ctx["layer"].channel
    assert isinstance(channel, MoESpec)
    return np.zeros(channel.n_experts, dtype=np.float32)  # no bias: selection by probs alone


def _ones_d_model(w: np.ndarray | None, ctx: Ctx) -> np.ndarray:
    return np.ones(ctx["spec"].d_model, dtype=np.float32)


def _zeros_null_qkv(w: np.ndarray | None, ctx: Ctx) -> np.ndarray:
    return np.zeros((N.NULL_ATTENTION_HEAD_DIM, ctx["spec"].d_model), dtype=np.float32)


def _zeros_null_out(w: np.ndarray | None, ctx: Ctx) -> np.ndarray:
    return np.zeros((ctx["spec"].d_model, N.NULL_ATTENTION_HEAD_DIM), dtype=np.float32)


TRANSFORMS: dict[str, Transform] = {
    "copy": _copy,
    "squeeze_conv": _squeeze_conv,
    "permute_q": _permute_q,
    "permute_k": _permute_k,
    "neg_exp_column": _neg_exp_column,
    "column": _column,
    "group_rows": _group_rows,
    "expert_bias_or_zeros": _expert_bias_or_zeros,
    "ones_d_model": _ones_d_model,
    "zeros_null_qkv": _zeros_null_qkv,
    "zeros_null_out": _zeros_null_out,
}
Shape = tuple[int, ...]
ShapeRule = Callable[[Shape | None, Ctx], Shape]


def _moe_experts(ctx: Ctx) -> int:
    channel = ctx["layer"].channel
    assert isinstance(channel, MoESpec)
    return channel.n_experts


def _known(shape: Shape | None) -> Shape:
    assert shape is not None
    return shape


# The numpy shape each transform produces from its input's shape: the layout without the data
# (``star.export.layout``; tests check it against ``plan_tensors`` for every target).
SHAPES: dict[str, ShapeRule] = {
    "copy": lambda s, ctx: _known(s),
    "squeeze_conv": lambda s, ctx: (_known(s)[0], _known(s)[2]),
    "permute_q": lambda s, ctx: _known(s),
    "permute_k": lambda s, ctx: _known(s),
    "neg_exp_column": lambda s, ctx: (_known(s)[0], 1),
    "column": lambda s, ctx: (_known(s)[0], 1),
    "group_rows": lambda s, ctx: (ctx["layer"].mixer.n_groups,
                                  _known(s)[0] // ctx["layer"].mixer.n_groups),
    "expert_bias_or_zeros": lambda s, ctx: s if s is not None else (_moe_experts(ctx),),
    "ones_d_model": lambda s, ctx: (ctx["spec"].d_model,),
    "zeros_null_qkv": lambda s, ctx: (N.NULL_ATTENTION_HEAD_DIM, ctx["spec"].d_model),
    "zeros_null_out": lambda s, ctx: (ctx["spec"].d_model, N.NULL_ATTENTION_HEAD_DIM),
}


OPTIONAL_SOURCE = frozenset(
    {"expert_bias_or_zeros", "ones_d_model", "zeros_null_qkv", "zeros_null_out"}
)


def mixer_component(layer: LayerSpec) -> str:
    m = layer.mixer
    if isinstance(m, AttentionSpec):
        return "attention"
    if isinstance(m, ShortConvSpec):
        return "shortconv"
    if isinstance(m, SSMSpec):
        return "ssm"
    return m.kind.value  # not in any table: the planner reports it


def channel_component(layer: LayerSpec) -> str | None:
    c = layer.channel
    if c is None:
        return None
    if isinstance(c, MoESpec):
        return "moe"
    return "swiglu" if c.kind == ChannelMixer.SWIGLU else "mlp"


def state_of(weights: Any) -> Mapping[str, Any]:
    """What an exporter reads: a torch module's state dict, or a state dict as given."""
    if hasattr(weights, "state_dict") and callable(weights.state_dict):
        return weights.state_dict()
    if isinstance(weights, Mapping):
        return weights
    raise TypeError(f"weights must be a torch module or a state dict, got {type(weights).__name__}")


def to_numpy_state(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A state dict of torch tensors (any dtype/device) or arrays -> float32 numpy arrays."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if hasattr(value, "detach"):
            value = value.detach().to("cpu").float().numpy()
        out[key] = np.asarray(value, dtype=np.float32)
    return out


@dataclass(frozen=True)
class Slot:
    """One GGUF tensor of an export before any data: where it comes from and how."""

    name: str  # GGUF name
    source: str  # our parameter (for a rule without one: the component prefix)
    transform: str  # key of TRANSFORMS / SHAPES
    has_source: bool  # False for rules that synthesise their tensor (no parameter behind it)
    ctx: Ctx


def slots(spec: ArchSpec, target: Target) -> list[Slot]:
    """The GGUF tensors of ``spec`` exported as ``target``, in file order, from the table alone.

    Raises ``ExportValidationError`` when a layer needs a component the target has no rules for.
    """
    table = N.TENSOR_TABLE[target.name]
    mixer_bid, channel_bid, _ = block_layout(spec, target)
    out: list[Slot] = []

    def emit(component: str, prefix: str, bid: int | None, ctx: Ctx) -> None:
        if component not in table:
            raise ExportValidationError(
                prefix or component, f"{target.name} has no tensors for {component}"
            )
        for rule in table[component]:
            source = prefix + rule.source
            if source == "lm_head.weight" and spec.tie_embeddings:
                continue
            out.append(Slot(rule.gguf.format(bid=bid), source, rule.transform,
                            bool(rule.source), {**ctx, "source": source}))

    emit("model", "", None, {"spec": spec})
    if "null_attention" in table:
        emit("null_attention", "", 0, {"spec": spec})
    for layer in spec.layers:
        i, owner = layer.index, spec.weight_owner(layer.index)
        ctx = {"spec": spec, "layer": layer}
        fmt = {"i": i, "owner": owner}
        emit("mixer_norm", N.COMPONENT_PREFIX["mixer_norm"].format(**fmt), mixer_bid[i], ctx)
        comp = mixer_component(layer)
        emit(
            comp, N.COMPONENT_PREFIX.get(comp, "layers.{i}.mixer.").format(**fmt), mixer_bid[i], ctx
        )
        channel = channel_component(layer)
        if channel is not None:
            emit("ffn_norm", N.COMPONENT_PREFIX["ffn_norm"].format(**fmt), channel_bid[i], ctx)
            emit(channel, N.COMPONENT_PREFIX[channel].format(**fmt), channel_bid[i], ctx)
    return out


def slot_shape(slot: Slot, source_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """ggml shape of a slot's tensor from its parameter's torch shape (None: no parameter)."""
    return tuple(reversed(SHAPES[slot.transform](source_shape, slot.ctx)))


def plan_tensors(
    spec: ArchSpec, target: Target, state: Mapping[str, np.ndarray]
) -> list[PlannedTensor]:
    """The GGUF tensors of ``spec`` exported as ``target``, in file order, with their data.

    Raises ``ExportValidationError`` for a missing parameter or one the table does not consume
    (a state dict that does not belong to ``spec``).
    """
    used: set[str] = set()
    planned: list[PlannedTensor] = []
    for slot in slots(spec, target):
        value = state.get(slot.source) if slot.has_source else None
        if value is None and slot.transform not in OPTIONAL_SOURCE:
            raise ExportValidationError(slot.source, "missing from the state dict")
        if value is not None:
            used.add(slot.source)
        data = TRANSFORMS[slot.transform](value, slot.ctx)
        planned.append(
            PlannedTensor(
                slot.name,
                np.ascontiguousarray(data, dtype=np.float32),
                slot.source if value is not None else "",
            )
        )

    # Shared mixers appear under every sharing layer's name in state_dict(); the owner's copy is
    # the one exported, so the others are "used" too.
    for layer in spec.layers:
        owner = spec.weight_owner(layer.index)
        if owner != layer.index:
            own = f"layers.{owner}.mixer."
            for key in list(used):
                if key.startswith(own):
                    used.add(f"layers.{layer.index}.mixer." + key[len(own) :])
    extra = sorted(k for k in state if k not in used)
    if extra:
        raise ExportValidationError(
            extra[0],
            f"not part of {target.name} export of this spec ({len(extra)} unused parameter(s))",
        )
    return planned

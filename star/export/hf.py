"""``export_hf``: spec + weights -> a Hugging Face transformers folder (take a winner away).

The folder holds ``config.json``, ``model.safetensors``, ``generation_config.json`` and, when the
vocabulary has room for it (>= 259 tokens), the synthetic byte-level tokenizer that the GGUF
carries (``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``);
``AutoModelForCausalLM.from_pretrained(folder)`` loads it with the class that computes exactly
what ``star.nn`` computes (``star.export.hf_targets``).

Like the GGUF writer, every stage can stop the export before a byte is written: the spec is
checked (``UnsupportedGenome``), the state dict is matched against the spec's own parameter
shapes and every tensor planned from the name table (``ExportValidationError``). Only then is
``model.safetensors`` streamed one tensor at a time (memory stays at the size of the source
weights) to a temporary name, its header read back, and moved into place; the JSON files follow,
each written whole and moved into place. The weights are the same float32 values the GGUF export
writes (``tensors.to_numpy_state``): one ``--random-seed`` or ``--weights`` gives one model in
every format.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from star.export import names as N
from star.export.errors import ExportValidationError
from star.export.hf_config import generation_config, hf_blocks, hf_config, hf_kv_heads
from star.export.hf_names import NULL_ATTENTION, HfArch, HfRule
from star.export.hf_safetensors import StTensor, read_header, write_safetensors
from star.export.hf_targets import check_hf_exportable
from star.export.hf_tokenizer import TOKENIZER_FILES, tokenizer_files, tokenizer_kind
from star.export.names import NULL_ATTENTION_HEAD_DIM
from star.export.tensors import (
    channel_component,
    mixer_component,
    state_of,
    to_numpy_state,
)
from star.genome.spec import ArchSpec, AttentionSpec, LayerSpec, MoESpec

WEIGHTS_FILE = "model.safetensors"
HF_DTYPES = {"f32": "F32", "f16": "F16"}
# Every file an export may write: ``force`` replaces these and removes stale ones, nothing else.
EXPORT_FILES = ("config.json", "generation_config.json", WEIGHTS_FILE, *TOKENIZER_FILES)


@dataclass(frozen=True)
class HfTensor:
    name: str  # HF checkpoint name
    shape: tuple[int, ...]
    sources: tuple[str, ...]  # our parameters it is made of
    produce: Callable[[], np.ndarray]  # float32, computed when written
    verbatim: bool = False  # one source, stored unchanged (a plain rename)


@dataclass(frozen=True)
class HfPlan:
    """Everything that will be written, checked."""

    arch: HfArch
    dtype: str  # "f32" | "f16"
    config: dict[str, Any]
    tensors: list[HfTensor]
    tokenizer: str  # "spm-bytes" or "none"
    context_length: int

    @property
    def n_params(self) -> int:
        return sum(int(np.prod(t.shape)) for t in self.tensors)


@dataclass(frozen=True)
class HfExportResult:
    path: Path  # the folder
    architecture: str  # transformers class
    model_type: str
    files: tuple[str, ...]
    n_tensors: int
    n_params: int  # as stored (shared mixers once per layer, a written-out tied head twice)
    dtype: str
    size_bytes: int  # model.safetensors
    sha256: str  # of model.safetensors
    tokenizer: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "architecture": self.architecture,
            "model_type": self.model_type, "files": list(self.files),
            "n_tensors": self.n_tensors, "n_params": self.n_params, "dtype": self.dtype,
            "size_bytes": self.size_bytes, "sha256": self.sha256, "tokenizer": self.tokenizer,
        }  # fmt: skip


def check_state_shapes(spec: ArchSpec, state: Mapping[str, Any]) -> None:
    """``state`` has exactly the parameters of ``StarModel(spec)``, with their shapes.

    Catches a checkpoint of another scale or genome by name, before anything is written.
    """
    from star.nn import StarModel  # torch, imported only when exporting

    expected = {k: tuple(v.shape) for k, v in StarModel(spec, device="meta").state_dict().items()}
    for name, shape in expected.items():
        if name not in state:
            raise ExportValidationError(name, "missing from the state dict")
        got = tuple(state[name].shape)
        if got != shape:
            raise ExportValidationError(name, f"shape {got} != {shape} of this spec")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ExportValidationError(extra[0], f"not a parameter of this spec ({len(extra)} extra)")


def repeat_kv_rows(w: np.ndarray, n_kv: int, repeat: int) -> np.ndarray:
    """K or V projection (n_kv * hd, d) -> (n_kv * repeat * hd, d), each head's rows repeated.

    GQA query head h reads KV head h // (H / n_kv); after the repeat it reads head
    h // (H / (n_kv * repeat)), a copy of the same one: the attention output is unchanged.
    """
    rows, cols = w.shape
    return np.repeat(w.reshape(n_kv, rows // n_kv, cols), repeat, axis=0).reshape(-1, cols)


def _producer(
    rule: HfRule,
    sources: tuple[str, ...],
    state: Mapping[str, Any],
    expert: int | None,
    kv: tuple[int, int],
) -> Callable[[], np.ndarray]:
    """The deferred computation of one HF tensor: float32 conversion + the rule's transform.

    ``per_expert`` converts only its expert's slice, so E experts cost one pass, not E;
    ``repeat_kv`` repeats each of the layer's ``kv[0]`` KV heads ``kv[1]`` times.
    """

    def load(name: str) -> np.ndarray:
        value = state[name] if expert is None else state[name][expert]
        return to_numpy_state({name: value})[name]

    def produce() -> np.ndarray:
        arrays = [load(s) for s in sources]
        if rule.transform in ("copy", "per_expert"):
            return arrays[0]
        if rule.transform == "repeat_kv":
            return repeat_kv_rows(arrays[0], *kv)
        if rule.transform == "concat":
            return np.concatenate(arrays, axis=0)
        raise ValueError(f"unknown transform {rule.transform!r}")

    return produce


def _null_attention(arch: HfArch, d: int) -> list[HfTensor]:
    """The no-op attention block 0 (``hf_names.NULL_ATTENTION``): synthesised, no sources."""
    hd = NULL_ATTENTION_HEAD_DIM
    shapes = {"ones": (d,), "zeros_in": (hd, d), "zeros_out": (d, hd)}

    def filled(shape: tuple[int, ...], value: float) -> Callable[[], np.ndarray]:
        return lambda: np.full(shape, value, dtype=np.float32)

    block = arch.block_prefix.format(bid=0)
    return [
        HfTensor(block + name, shapes[kind], (), filled(shapes[kind], float(kind == "ones")))
        for name, kind in NULL_ATTENTION
    ]


def plan_hf_tensors(spec: ArchSpec, arch: HfArch, state: Mapping[str, Any]) -> list[HfTensor]:
    """The HF tensors of ``spec`` in file order, each produced lazily from ``state``.

    Raises ``ExportValidationError`` for a missing parameter or one the table does not consume.
    """
    mixer_bid, channel_bid, _ = hf_blocks(spec, arch)
    used: set[str] = set()
    planned: list[HfTensor] = []

    def shape_of(name: str) -> tuple[int, ...]:
        return tuple(int(s) for s in state[name].shape)

    kv_target = hf_kv_heads(spec)

    def emit(component: str, prefix: str, block: str, layer: LayerSpec | None = None) -> None:
        moe = layer.channel if layer is not None and isinstance(layer.channel, MoESpec) else None
        n_kv = layer.mixer.n_kv_heads if layer and isinstance(layer.mixer, AttentionSpec) else 1
        kv = (n_kv, kv_target // n_kv if component == "attention" else 1)
        if component not in arch.tensors:
            raise ExportValidationError(
                prefix or component, f"{arch.architecture} has no {component}"
            )
        for rule in arch.tensors[component]:
            sources = tuple(prefix + s for s in rule.sources)
            if sources == ("lm_head.weight",) and spec.tie_embeddings:
                if arch.ties_head:
                    continue
                sources = ("embed.weight",)  # the class never ties: write the head out
            if rule.sources == ("expert_bias",) and moe is not None and not moe.expert_bias:
                continue
            for s in sources:
                if s not in state:
                    raise ExportValidationError(s, "missing from the state dict")
            used.update(sources)
            shapes = [shape_of(s) for s in sources]
            experts = range(shapes[0][0]) if rule.transform == "per_expert" else [None]
            for e in experts:
                if rule.transform == "per_expert":
                    shape = shapes[0][1:]
                elif rule.transform == "concat":
                    shape = (sum(s[0] for s in shapes), *shapes[0][1:])
                elif rule.transform == "repeat_kv":
                    shape = (shapes[0][0] * kv[1], *shapes[0][1:])
                else:
                    shape = shapes[0]

                make = _producer(rule, sources, state, e, kv)
                same = rule.transform == "copy" or (rule.transform == "repeat_kv" and kv[1] == 1)
                name = block + rule.hf.format(e=e)
                planned.append(HfTensor(name, shape, sources, make, verbatim=same))

    emit("model", "", "")
    if arch.null_attention:
        planned += _null_attention(arch, spec.d_model)
    for layer in spec.layers:
        i, owner = layer.index, spec.weight_owner(layer.index)
        fmt = {"i": i, "owner": owner}
        block = arch.block_prefix.format(bid=mixer_bid[i])
        emit("mixer_norm", N.COMPONENT_PREFIX["mixer_norm"].format(**fmt), block)
        comp = mixer_component(layer)
        emit(comp, N.COMPONENT_PREFIX.get(comp, "layers.{i}.mixer.").format(**fmt), block, layer)
        channel = channel_component(layer)
        if channel is not None:
            cblock = arch.block_prefix.format(bid=channel_bid[i])
            emit("ffn_norm", N.COMPONENT_PREFIX["ffn_norm"].format(**fmt), cblock)
            emit(channel, N.COMPONENT_PREFIX[channel].format(**fmt), cblock, layer)

    # Shared mixers appear under every sharing layer's name; the owner's copy is written for each.
    for layer in spec.layers:
        owner = spec.weight_owner(layer.index)
        if owner != layer.index:
            own = f"layers.{owner}.mixer."
            used.update(f"layers.{layer.index}.mixer." + k[len(own):]
                        for k in list(used) if k.startswith(own))  # fmt: skip
    extra = sorted(k for k in state if k not in used)
    if extra:
        raise ExportValidationError(
            extra[0], f"not part of the {arch.architecture} export ({len(extra)} unused)"
        )
    return planned


def plan_hf_export(spec: ArchSpec, weights: Any, *, dtype: str = "f32") -> HfPlan:
    """Check and plan an HF export without writing anything."""
    if dtype not in HF_DTYPES:
        raise ExportValidationError("dtype", f"{dtype!r} is not one of {', '.join(HF_DTYPES)}")
    arch = check_hf_exportable(spec)
    state = state_of(weights)
    check_state_shapes(spec, state)
    return HfPlan(
        arch=arch,
        dtype=dtype,
        config=hf_config(spec, arch, dtype=dtype),
        tensors=plan_hf_tensors(spec, arch, state),
        tokenizer=tokenizer_kind(spec.vocab_size),
        context_length=spec.context_length,
    )


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def prepare_output_dir(path: Path, *, force: bool) -> None:
    """Create ``path``; refuse a non-empty one unless ``force`` (then only our files go)."""
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise FileExistsError(f"{path}: directory exists and is not empty (use force / --force)")
    path.mkdir(parents=True, exist_ok=True)
    for name in EXPORT_FILES:  # stale files of an earlier export (e.g. a tokenizer)
        (path / name).unlink(missing_ok=True)


def write_hf_plan(plan: HfPlan, path: Path | str, *, force: bool = False) -> HfExportResult:
    """Write a planned export into the folder ``path`` (see ``prepare_output_dir``)."""
    out = Path(path)
    prepare_output_dir(out, force=force)
    tensors = [StTensor(t.name, t.shape, t.produce) for t in plan.tensors]
    weights = out / WEIGHTS_FILE
    tmp = weights.with_name(WEIGHTS_FILE + ".tmp")
    sha = write_safetensors(tmp, tensors, dtype=HF_DTYPES[plan.dtype], metadata={"format": "pt"})
    header = read_header(tmp)
    if set(header) - {"__metadata__"} != {t.name for t in plan.tensors}:
        raise ExportValidationError(WEIGHTS_FILE, "header does not list the planned tensors")
    os.replace(tmp, weights)
    files = [WEIGHTS_FILE]
    texts = {
        "config.json": json.dumps(plan.config, indent=2) + "\n",
        "generation_config.json": json.dumps(generation_config(), indent=2) + "\n",
        **tokenizer_files(plan.config["vocab_size"], plan.context_length),
    }
    for name, text in texts.items():
        _write_text(out / name, text)
        files.append(name)
    return HfExportResult(
        path=out,
        architecture=plan.arch.architecture,
        model_type=plan.arch.model_type,
        files=tuple(sorted(files)),
        n_tensors=len(plan.tensors),
        n_params=plan.n_params,
        dtype=plan.dtype,
        size_bytes=weights.stat().st_size,
        sha256=sha,
        tokenizer=plan.tokenizer,
    )


def export_hf(
    spec: ArchSpec, weights: Any, path: Path | str, *, dtype: str = "f32", force: bool = False
) -> HfExportResult:
    """Check, plan and write ``spec`` with ``weights`` (a ``StarModel`` or its state dict)."""
    return write_hf_plan(plan_hf_export(spec, weights, dtype=dtype), path, force=force)


def hf_state_dict(spec: ArchSpec, weights: Any) -> dict[str, Any]:
    """HF checkpoint name -> float32 array, in memory: for comparisons and benchmarks."""
    plan = plan_hf_export(spec, weights)
    return {t.name: t.produce() for t in plan.tensors}


def hf_name_map(spec: ArchSpec) -> dict[str, str]:
    """HF tensor name -> our parameter, for every tensor stored unchanged (a rename).

    For copying weights between ``star.nn`` and transformers in tests and benchmarks; tensors
    that are combined or reshaped (GraniteMoeHybrid's gate+up, per-expert splits, repeated KV
    heads) are left out, ``hf_state_dict`` produces those.
    """
    from star.nn import StarModel

    arch = check_hf_exportable(spec)
    state = StarModel(spec, device="meta").state_dict()  # shapes only, nothing is produced
    return {t.name: t.sources[0] for t in plan_hf_tensors(spec, arch, state) if t.verbatim}

"""``export_gguf``: spec + weights -> a GGUF file a stock llama.cpp runs exactly.

The writer is a straight pipeline, each stage able to stop the export before a byte is written:
check the spec (``UnsupportedGenome``), plan tensors from the table, build metadata, validate both
(``ExportValidationError``); then write to a temporary file tensor by tensor (quantising one at a
time, so memory stays at the size of the weights), read it back with ``GGUFReader``, and only then
move it into place.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader, GGUFWriter

from star.export.errors import ExportReadbackError
from star.export.metadata import Metadata, build_metadata
from star.export.quant import Quant, as_quant, encode, quant_type_for, tensor_nbytes
from star.export.targets import check_exportable
from star.export.tensors import PlannedTensor, plan_tensors, to_numpy_state
from star.export.tokenizer import synthetic_tokenizer
from star.export.validate import validate_metadata, validate_tensors
from star.genome.spec import ArchSpec


@dataclass(frozen=True)
class ExportResult:
    path: Path
    arch: str  # llama.cpp architecture written
    size_bytes: int
    sha256: str
    n_tensors: int
    quant: str  # requested weight type (Quant value)
    tokenizer: str  # "llama" (text works) or "none" (token ids only)
    n_params: int  # parameters written (shared mixers counted once per layer, as stored)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "arch": self.arch, "size_bytes": self.size_bytes,
            "sha256": self.sha256, "n_tensors": self.n_tensors, "quant": self.quant,
            "tokenizer": self.tokenizer, "n_params": self.n_params,
        }  # fmt: skip


@dataclass(frozen=True)
class ExportPlan:
    """Everything that will be written, validated."""

    arch: str
    quant: Quant
    metadata: Metadata
    tensors: list[PlannedTensor]
    tokenizer: str

    def tensor_types(self) -> list[tuple[str, tuple[int, ...], Any]]:
        return [
            (t.name, t.ggml_shape, quant_type_for(t.name, t.ggml_shape, self.quant))
            for t in self.tensors
        ]


def _state_of(weights: Any) -> Mapping[str, Any]:
    if hasattr(weights, "state_dict") and callable(weights.state_dict):
        return weights.state_dict()
    if isinstance(weights, Mapping):
        return weights
    raise TypeError(f"weights must be a torch module or a state dict, got {type(weights).__name__}")


def plan_export(
    spec: ArchSpec, weights: Any, *, quant: Quant | str = Quant.F32, name: str | None = None
) -> ExportPlan:
    """Check, plan and validate an export without writing anything."""
    q = as_quant(quant)
    target = check_exportable(spec)
    tensors = plan_tensors(spec, target, to_numpy_state(_state_of(weights)))
    tokenizer = synthetic_tokenizer(spec.vocab_size)
    meta = build_metadata(spec, target, quant=q, tokenizer=tokenizer, name=name or spec.name)
    plan = ExportPlan(target.name, q, meta, tensors, tokenizer.model)
    validate_metadata(target.name, meta, quant=q)
    validate_tensors(target.name, meta, plan.tensor_types(), quant=q)
    return plan


def write_plan(plan: ExportPlan, path: str | os.PathLike[str]) -> ExportResult:
    """Write a validated plan to ``path`` (atomically), read it back, and describe the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    try:
        _write(plan, tmp)
        _read_back(plan, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return ExportResult(
        path=path,
        arch=plan.arch,
        size_bytes=path.stat().st_size,
        sha256=digest.hexdigest(),
        n_tensors=len(plan.tensors),
        quant=plan.quant.value,
        tokenizer=plan.tokenizer,
        n_params=sum(int(t.data.size) for t in plan.tensors),
    )


def export_gguf(
    spec: ArchSpec,
    weights: Any,
    path: str | os.PathLike[str],
    *,
    quant: Quant | str = Quant.F32,
    name: str | None = None,
) -> ExportResult:
    """Export ``weights`` (a ``StarModel`` or its state dict) of ``spec`` to GGUF at ``path``.

    Raises ``UnsupportedGenome`` / ``ExportValidationError`` before anything is written, and
    ``ExportReadbackError`` (the file removed) if the written file does not read back as planned.
    """
    return write_plan(plan_export(spec, weights, quant=quant, name=name), path)


def _write(plan: ExportPlan, path: Path) -> None:
    writer = GGUFWriter(path, plan.arch)
    for key, (value, vtype) in plan.metadata.items():
        if key == "general.architecture":
            continue  # GGUFWriter writes it from ``arch``
        writer.add_key_value(key, value, vtype)
    types = plan.tensor_types()
    for t, (_, shape, qtype) in zip(plan.tensors, types, strict=True):
        # ggml shape -> numpy shape of the stored (possibly quantised) data is derived by gguf
        writer.add_tensor_info(
            t.name, t.data.shape, t.data.dtype, tensor_nbytes(shape, qtype), raw_dtype=qtype
        )
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t, (_, _, qtype) in zip(plan.tensors, types, strict=True):
            writer.write_tensor_data(encode(t.data, qtype))  # one tensor in memory at a time
    finally:
        writer.close()


def _read_back(plan: ExportPlan, path: Path) -> None:
    reader = GGUFReader(path)
    arch_field = reader.get_field("general.architecture")
    arch = arch_field.contents() if arch_field is not None else None
    if arch != plan.arch:
        raise ExportReadbackError(f"{path}: architecture {arch!r}, planned {plan.arch!r}")
    if len(reader.tensors) != len(plan.tensors):
        raise ExportReadbackError(
            f"{path}: {len(reader.tensors)} tensors read back, {len(plan.tensors)} planned"
        )
    for got, (name, shape, qtype) in zip(reader.tensors, plan.tensor_types(), strict=True):
        got_shape = tuple(int(x) for x in got.shape)
        if got.name != name or got_shape != tuple(shape) or got.tensor_type != qtype:
            raise ExportReadbackError(
                f"{path}: tensor {got.name} {got_shape} {got.tensor_type.name} read back, "
                f"planned {name} {tuple(shape)} {qtype.name}"
            )
    for key, (value, _) in plan.metadata.items():
        field = reader.get_field(key)
        if field is None:
            raise ExportReadbackError(f"{path}: metadata key {key} missing")
        got = field.contents()
        if isinstance(value, float):
            same = np.float32(got) == np.float32(value)  # stored as float32
        else:
            same = key.startswith("tokenizer.") or got == value
        if not same:
            raise ExportReadbackError(f"{path}: {key} = {field.contents()!r}, planned {value!r}")

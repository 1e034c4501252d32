"""``export_gguf``: spec + weights -> a GGUF file a stock llama.cpp runs exactly.

The writer is a straight pipeline, each stage able to stop the export before a byte is written:
check the spec (``UnsupportedGenome``), plan tensors from the table, build metadata, validate both
and the storage type of every tensor in the requested ``Quant`` (``ExportValidationError``); then
write F32 or F16 to a temporary file tensor by tensor, read it back with ``GGUFReader``, and for
every other type run the pinned ``llama-quantize`` on that F16 file (``star.export.quantize``) and
read ITS output back against the planned per-tensor types; only then move the file into place.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

from star.export import names as N
from star.export.errors import ExportReadbackError
from star.export.metadata import Metadata, build_metadata
from star.export.mixture import QuantModel, tensor_nbytes, tensor_types
from star.export.quant import Quant, as_quant
from star.export.quantize import quantize_file
from star.export.targets import check_exportable
from star.export.tensors import PlannedTensor, plan_tensors, state_of, to_numpy_state
from star.export.tokenizer import synthetic_tokenizer
from star.export.validate import validate_metadata, validate_tensors
from star.genome.spec import ArchSpec

TensorTypes = list[tuple[str, tuple[int, ...], GGMLQuantizationType]]
GGML_QNT_VERSION = 2  # what llama-quantize writes as general.quantization_version


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
    quantized_by: str = "star"  # "star" (F32/F16) or "llama-quantize (llama.cpp <commit>)"
    tensor_types: dict[str, str] = field(default_factory=dict)  # GGUF tensor -> type ("Q6_K")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "arch": self.arch, "size_bytes": self.size_bytes,
            "sha256": self.sha256, "n_tensors": self.n_tensors, "quant": self.quant,
            "tokenizer": self.tokenizer, "n_params": self.n_params,
            "quantized_by": self.quantized_by, "type_counts": self.type_counts(),
        }  # fmt: skip

    def type_counts(self) -> dict[str, int]:
        """How many tensors each storage type holds (``{"Q4_K": 80, "Q6_K": 17, ...}``)."""
        counts: dict[str, int] = {}
        for name in self.tensor_types.values():
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))


@dataclass(frozen=True)
class ExportPlan:
    """Everything that will be written, validated.

    ``metadata`` is that of the file our writer produces (F32, or F16 on the way to
    llama-quantize); ``tensor_types()`` gives the types of the FINAL file in ``quant``.
    """

    arch: str
    quant: Quant
    metadata: Metadata
    tensors: list[PlannedTensor]
    tokenizer: str
    model: QuantModel

    def tensor_types(self, quant: Quant | None = None) -> TensorTypes:
        """(name, ggml shape, type) of every tensor in ``quant`` (default: the requested one)."""
        types = tensor_types(
            [(t.name, t.ggml_shape) for t in self.tensors], quant or self.quant, self.model
        )
        return [(t.name, t.ggml_shape, types[t.name]) for t in self.tensors]

    def final_metadata(self) -> Metadata:
        """Metadata of the final file: llama-quantize rewrites file type and quant version."""
        if not self.quant.by_tool:
            return self.metadata
        meta = dict(self.metadata)
        meta[N.K_FILE_TYPE] = (int(self.quant.file_type), GGUFValueType.UINT32)
        meta[N.K_QUANT_VERSION] = (GGML_QNT_VERSION, GGUFValueType.UINT32)
        return meta


def plan_export(
    spec: ArchSpec, weights: Any, *, quant: Quant | str = Quant.F32, name: str | None = None
) -> ExportPlan:
    """Check, plan and validate an export without writing anything (nor running a tool).

    Raises ``UnknownQuant`` (a ``ValueError`` naming the choices) for a type not offered, and
    ``UnsupportedQuant`` where llama-quantize would abort on a tensor of this spec.
    """
    q = as_quant(quant)
    target = check_exportable(spec)
    tensors = plan_tensors(spec, target, to_numpy_state(state_of(weights)))
    tokenizer = synthetic_tokenizer(spec.vocab_size)
    meta = build_metadata(spec, target, quant=q.written, tokenizer=tokenizer,
                          name=name or spec.name)
    plan = ExportPlan(target.name, q, meta, tensors, tokenizer.model,
                      QuantModel.from_metadata(target.name, meta))
    validate_metadata(target.name, meta, quant=q.written)
    validate_tensors(target.name, meta, plan.tensor_types(q.written), quant=q.written)
    validate_tensors(target.name, meta, plan.tensor_types(), quant=q)
    return plan


def write_plan(plan: ExportPlan, path: str | os.PathLike[str]) -> ExportResult:
    """Write a validated plan to ``path`` (atomically), read it back, and describe the file.

    For a type made by llama-quantize, our F16 file goes to ``<path>.f16.partial`` first; the
    tool's output must then read back with exactly the planned per-tensor types.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    written = path.with_name(path.name + f".{plan.quant.written.value}.partial")
    quantized_by = "star"
    try:
        first = written if plan.quant.by_tool else tmp
        _write(plan, first)
        _read_back(first, plan.arch, plan.tensor_types(plan.quant.written), plan.metadata,
                   same_order=True)
        if plan.quant.by_tool:
            run = quantize_file(written, tmp, plan.quant)
            written.unlink()
            quantized_by = f"llama-quantize ({run.runtime})"
            _read_back(tmp, plan.arch, plan.tensor_types(), plan.final_metadata(),
                       same_order=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        written.unlink(missing_ok=True)
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
        quantized_by=quantized_by,
        tensor_types={name: qt.name for name, _, qt in plan.tensor_types()},
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

    ``quant`` is a ``Quant`` or its value (``"q4_k_m"``); all but F32/F16 are made by the pinned
    ``llama-quantize`` from our F16 file (the runtime is built on first use). Raises
    ``UnsupportedGenome`` / ``ExportValidationError`` before anything is written,
    ``ExportQuantizeError`` if the tool fails, and ``ExportReadbackError`` (the file removed) if a
    written file does not read back as planned.
    """
    return write_plan(plan_export(spec, weights, quant=quant, name=name), path)


def _write(plan: ExportPlan, path: Path) -> None:
    """Our writer: the plan's tensors as F32 or F16 (the plan's ``quant.written``)."""
    writer = GGUFWriter(path, plan.arch)
    for key, (value, vtype) in plan.metadata.items():
        if key == "general.architecture":
            continue  # GGUFWriter writes it from ``arch``
        writer.add_key_value(key, value, vtype)
    types = plan.tensor_types(plan.quant.written)
    for t, (_, shape, qtype) in zip(plan.tensors, types, strict=True):
        # ggml shape -> numpy shape of the stored data is derived by gguf
        writer.add_tensor_info(
            t.name, t.data.shape, t.data.dtype, tensor_nbytes(shape, qtype), raw_dtype=qtype
        )
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t, (_, _, qtype) in zip(plan.tensors, types, strict=True):
            writer.write_tensor_data(_encode(t.data, qtype))  # one tensor in memory at a time
    finally:
        writer.close()


def _encode(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    if qtype == GGMLQuantizationType.F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    assert qtype == GGMLQuantizationType.F16, qtype
    return np.ascontiguousarray(data, dtype=np.float16)


def _trim(shape: Iterable[int]) -> tuple[int, ...]:
    dims = list(shape)
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return tuple(dims)


def _read_back(
    path: Path, arch: str, types: TensorTypes, metadata: Metadata, *, same_order: bool
) -> None:
    """The file at ``path`` holds exactly the planned tensors (names, shapes, types; in order
    for our writer, in the loader's order for llama-quantize) and metadata."""
    reader = GGUFReader(path)
    arch_field = reader.get_field("general.architecture")
    got_arch = arch_field.contents() if arch_field is not None else None
    if got_arch != arch:
        raise ExportReadbackError(f"{path}: architecture {got_arch!r}, planned {arch!r}")
    if len(reader.tensors) != len(types):
        raise ExportReadbackError(
            f"{path}: {len(reader.tensors)} tensors read back, {len(types)} planned"
        )
    # llama-quantize writes ggml_n_dims dims: trailing 1s dropped ({128, 1} -> {128})
    trim = _trim if not same_order else tuple
    planned = {name: (trim(shape), qtype) for name, shape, qtype in types}
    for i, got in enumerate(reader.tensors):
        got_shape = trim(int(x) for x in got.shape)
        want_name = types[i][0] if same_order else got.name
        shape, qtype = planned.get(want_name, ((), None))
        if got.name != want_name or got_shape != shape or got.tensor_type != qtype:
            raise ExportReadbackError(
                f"{path}: tensor {got.name} {got_shape} {got.tensor_type.name} read back, "
                f"planned {want_name} {shape} {qtype.name if qtype is not None else 'nothing'}"
            )
    for key, (value, _) in metadata.items():
        field_ = reader.get_field(key)
        if field_ is None:
            raise ExportReadbackError(f"{path}: metadata key {key} missing")
        got_value = field_.contents()
        if isinstance(value, float):
            same = np.float32(got_value) == np.float32(value)  # stored as float32
        else:
            same = key.startswith("tokenizer.") or got_value == value
        if not same:
            raise ExportReadbackError(f"{path}: {key} = {got_value!r}, planned {value!r}")

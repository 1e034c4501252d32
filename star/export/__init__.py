"""GGUF export: an ``ArchSpec`` and its weights -> a file stock llama.cpp runs exactly.

Public surface:

- ``check_exportable(spec) -> Target`` (raises ``UnsupportedGenome`` naming layer and operator)
  and ``supported_targets()``: what the search's repair step calls;
- ``export_gguf(spec, model_or_state_dict, path, *, quant) -> ExportResult``: F32/F16 written
  here, every other ``Quant`` by the pinned ``llama-quantize`` from our F16 file;
- ``Quant`` (the one enum of weight types) and ``tensor_types(tensors, quant, model)``: the one
  rule deciding each tensor's storage type (llama-quantize's mixtures, ported), with
  ``tensor_nbytes``; ``gguf_layout(spec, shapes)``: the file without weights, for the cost model;
- ``check_hf_exportable(spec) -> HfArch`` and ``export_hf(spec, model_or_state_dict, folder, *,
  dtype, force) -> HfExportResult``: the same weights as a Hugging Face transformers folder.

Importing this package does not import torch.
"""

from __future__ import annotations

from star.export.errors import (
    ExportError,
    ExportReadbackError,
    ExportValidationError,
    UnsupportedGenome,
)
from star.export.hf import HfExportResult, HfPlan, export_hf, plan_hf_export, write_hf_plan
from star.export.hf_names import HfArch
from star.export.hf_targets import check_hf_exportable
from star.export.layout import GgufLayout, gguf_layout
from star.export.mixture import QuantModel, UnsupportedQuant, tensor_nbytes, tensor_types
from star.export.quant import Quant, UnknownQuant, as_quant
from star.export.quantize import ExportQuantizeError
from star.export.targets import Target, check_exportable, supported_targets
from star.export.writer import ExportPlan, ExportResult, export_gguf, plan_export, write_plan

__all__ = [
    "ExportError",
    "ExportPlan",
    "ExportQuantizeError",
    "ExportReadbackError",
    "ExportResult",
    "ExportValidationError",
    "GgufLayout",
    "HfArch",
    "HfExportResult",
    "HfPlan",
    "Quant",
    "QuantModel",
    "Target",
    "UnknownQuant",
    "UnsupportedGenome",
    "UnsupportedQuant",
    "as_quant",
    "check_exportable",
    "check_hf_exportable",
    "export_gguf",
    "export_hf",
    "gguf_layout",
    "plan_export",
    "plan_hf_export",
    "supported_targets",
    "tensor_nbytes",
    "tensor_types",
    "write_hf_plan",
    "write_plan",
]

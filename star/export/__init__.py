"""GGUF export: an ``ArchSpec`` and its weights -> a file stock llama.cpp runs exactly.

Public surface:

- ``check_exportable(spec) -> Target`` (raises ``UnsupportedGenome`` naming layer and operator)
  and ``supported_targets()``: what the search's repair step calls;
- ``export_gguf(spec, model_or_state_dict, path, *, quant) -> ExportResult``: F32/F16 written
  here, every other ``Quant`` by the pinned ``llama-quantize`` from our F16 file;
- ``Quant`` (the one enum of weight types) and ``tensor_types(tensors, quant, model)``: the one
  rule deciding each tensor's storage type (llama-quantize's mixtures, ported), with
  ``tensor_nbytes``; ``gguf_layout(spec, shapes)``: the file without weights, for the cost model.

Importing this package does not import torch.
"""

from __future__ import annotations

from star.export.errors import (
    ExportError,
    ExportReadbackError,
    ExportValidationError,
    UnsupportedGenome,
)
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
    "Quant",
    "QuantModel",
    "Target",
    "UnknownQuant",
    "UnsupportedGenome",
    "UnsupportedQuant",
    "as_quant",
    "check_exportable",
    "export_gguf",
    "gguf_layout",
    "plan_export",
    "supported_targets",
    "tensor_nbytes",
    "tensor_types",
    "write_plan",
]

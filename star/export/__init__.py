"""GGUF export: an ``ArchSpec`` and its weights -> a file stock llama.cpp runs exactly.

Public surface:

- ``check_exportable(spec) -> Target`` (raises ``UnsupportedGenome`` naming layer and operator)
  and ``supported_targets()``: what the search's repair step calls;
- ``export_gguf(spec, model_or_state_dict, path, *, quant) -> ExportResult``;
- ``quant_type_for(tensor_name, ggml_shape, requested)``: the one rule deciding each tensor's
  storage type (the cost model imports it), with ``tensor_nbytes``.

Importing this package does not import torch.
"""

from __future__ import annotations

from star.export.errors import (
    ExportError,
    ExportReadbackError,
    ExportValidationError,
    UnsupportedGenome,
)
from star.export.quant import Quant, quant_type_for, tensor_nbytes
from star.export.targets import Target, check_exportable, supported_targets
from star.export.writer import ExportPlan, ExportResult, export_gguf, plan_export, write_plan

__all__ = [
    "ExportError",
    "ExportPlan",
    "ExportReadbackError",
    "ExportResult",
    "ExportValidationError",
    "Quant",
    "Target",
    "UnsupportedGenome",
    "check_exportable",
    "export_gguf",
    "plan_export",
    "quant_type_for",
    "supported_targets",
    "tensor_nbytes",
    "write_plan",
]

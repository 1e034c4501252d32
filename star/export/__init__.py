"""GGUF export: an ``ArchSpec`` and its weights -> a file stock llama.cpp runs exactly.

Public surface:

- ``check_exportable(spec) -> Target`` (raises ``UnsupportedGenome`` naming layer and operator)
  and ``supported_targets()``: what the search's repair step calls;
- ``export_gguf(spec, model_or_state_dict, path, *, quant) -> ExportResult``;
- ``quant_type_for(tensor_name, ggml_shape, requested)``: the one rule deciding each tensor's
  storage type (the cost model imports it), with ``tensor_nbytes``;
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
from star.export.quant import Quant, quant_type_for, tensor_nbytes
from star.export.targets import Target, check_exportable, supported_targets
from star.export.writer import ExportPlan, ExportResult, export_gguf, plan_export, write_plan

__all__ = [
    "ExportError",
    "ExportPlan",
    "ExportReadbackError",
    "ExportResult",
    "ExportValidationError",
    "HfArch",
    "HfExportResult",
    "HfPlan",
    "Quant",
    "Target",
    "UnsupportedGenome",
    "check_exportable",
    "check_hf_exportable",
    "export_gguf",
    "export_hf",
    "plan_export",
    "plan_hf_export",
    "quant_type_for",
    "supported_targets",
    "tensor_nbytes",
    "write_hf_plan",
    "write_plan",
]

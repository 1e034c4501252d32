"""ExecuTorch export: any valid genome -> a .pte with a prefill and a decode method.

Stock llama.cpp runs fixed architectures; ExecuTorch runs any torch graph, so a genome mixing
short conv, Mamba-2, linear attention and attention can be measured too. Each star.nn operator
has a static-shape form here (fixed-size state buffers, no data-dependent shapes) that reuses
its weights, equals star.nn's incremental decoding, and lowers to XNNPACK:

- ``StaticModel(model, max_context=, chunk=)``: the two forms of a ``StarModel`` (model.py);
- ``export_pte(model, path, options) -> PteExportResult``: quantize, lower, write atomically,
  read back with the ExecuTorch runtime and compare logits with torch (pte.py);
- ``PteOptions.for_spec(spec, quant=, max_context=, prefill_chunk=)`` checks options first.

Importing this package imports torch (not executorch: that happens when exporting).
"""

from __future__ import annotations

from star.export.executorch.model import StaticModel, schedule
from star.export.executorch.options import PteOptions, PteQuant
from star.export.executorch.pte import PteExportResult, export_pte

__all__ = [
    "PteExportResult",
    "PteOptions",
    "PteQuant",
    "StaticModel",
    "export_pte",
    "schedule",
]

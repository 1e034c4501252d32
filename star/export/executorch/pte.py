"""``export_pte``: a StarModel -> a checked .pte file, written atomically.

Pipeline (each stage can stop the export before the file appears): check options, build the
static form over the model's own weights, quantize if asked, export + lower, write to a
temporary file, read it back with the ExecuTorch runtime (methods, constants, logits against
the eager static form), then move it into place.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from star.export.executorch.lower import lower
from star.export.executorch.model import StaticModel
from star.export.executorch.options import PteOptions, PteQuant
from star.export.executorch.readback import probe_tokens, read_back
from star.nn import StarModel

# Read-back tolerance, relative to the largest reference logit. float32: XNNPACK sums in another
# order than torch (seen: 1e-6 relative). 8da4w: the program's int8 activation rounding against
# torchao's eager emulation of the same scheme.
TOLERANCE = {PteQuant.FP32: 1e-4, PteQuant.Q8DA4W: 5e-2}


@dataclass(frozen=True)
class PteExportResult:
    path: Path
    size_bytes: int
    sha256: str
    quant: str
    max_context: int
    prefill_chunk: int
    methods: tuple[str, ...]
    max_abs_error: float  # read-back logits vs the eager static form (same quantization)
    logits_scale: float
    quant_error: float | None  # eager quantized vs float32 logits (None for fp32)
    fp32_linears: tuple[str, ...]  # under 8da4w: linears whose width is not a multiple of 32
    export_seconds: float
    lower_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "runtime": "executorch", "size_bytes": self.size_bytes,
            "sha256": self.sha256, "quant": self.quant, "max_context": self.max_context,
            "prefill_chunk": self.prefill_chunk, "methods": list(self.methods),
            "max_abs_error": self.max_abs_error, "logits_scale": self.logits_scale,
            "quant_error": self.quant_error,
            "fp32_linears": list(self.fp32_linears), "export_seconds": self.export_seconds,
            "lower_seconds": self.lower_seconds,
        }  # fmt: skip


def export_pte(
    model: StarModel, path: str | Path, options: PteOptions, *, in_place: bool = False
) -> PteExportResult:
    """Export ``model`` to ``path``; raises ``ExportValidationError`` / ``ExportReadbackError``.

    Quantization replaces the model's linear weights, so it runs on a copy unless ``in_place``
    (the CLI, which builds the model only to export it, saves the copy's memory).
    """
    options.check(model.spec)
    path = Path(path)
    source = model if in_place or options.quant == PteQuant.FP32 else copy.deepcopy(model)
    static = StaticModel(source, max_context=options.max_context, chunk=options.prefill_chunk)
    float_reference = None
    if options.quant != PteQuant.FP32:  # before lower() quantizes the weights
        float_reference = [t.clone() for t in static.run(probe_tokens(static))]
        static.reset()
    lowered = lower(static, options)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(lowered.buffer)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the file is an artifact others fetch
        check = read_back(tmp, static, tolerance=TOLERANCE[options.quant],
                          float_reference=float_reference)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return PteExportResult(
        path=path,
        size_bytes=len(lowered.buffer),
        sha256=hashlib.sha256(lowered.buffer).hexdigest(),
        quant=options.quant.value,
        max_context=options.max_context,
        prefill_chunk=options.prefill_chunk,
        methods=check.methods,
        max_abs_error=check.max_abs_error,
        logits_scale=check.logits_scale,
        quant_error=check.quant_error,
        fp32_linears=lowered.fp32_linears,
        export_seconds=lowered.export_seconds,
        lower_seconds=lowered.lower_seconds,
    )

"""Read a written .pte back with the ExecuTorch Python runtime and check it against torch.

The check the GGUF path does with ``GGUFReader`` plus llama.cpp logits, here in one place: the
program loads, has exactly the expected methods, its constant methods say what was exported,
and one prefill chunk followed by decode steps gives the eager ``StaticModel``'s logits (the
state carried from prefill to decode included).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from star.export.errors import ExportReadbackError
from star.export.executorch.lower import CONSTANT_METHODS, METHODS, PTE_FORMAT
from star.export.executorch.model import StaticModel, schedule

N_DECODE = 3  # decode steps after the probe's prefill chunk


@dataclass(frozen=True)
class Readback:
    methods: tuple[str, ...]
    max_abs_error: float  # program vs eager StaticModel, over every call's logits
    logits_scale: float  # max |logit| of the eager reference (errors are relative to it)
    quant_error: float | None  # eager quantized vs float32 logits (None: not quantized)


def probe_tokens(model: StaticModel, seed: int = 0) -> list[int]:
    """One prefill chunk and N_DECODE single tokens, deterministic."""
    gen = torch.Generator().manual_seed(seed)
    n = model.chunk + N_DECODE
    return torch.randint(0, model.spec.vocab_size, (n,), generator=gen).tolist()


def run_program(path: Path, tokens: list[int], chunk: int) -> list[torch.Tensor]:
    """The runner's schedule through the Python runtime: each call's logits (V,)."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path)
    methods = {name: program.load_method(name) for name in METHODS}
    outs = []
    for start, size in schedule(len(tokens), chunk):
        method = methods["prefill" if size == chunk else "decode"]
        assert method is not None
        inputs = (
            torch.tensor([tokens[start : start + size]], dtype=torch.int64),
            torch.tensor([start], dtype=torch.int64),
            torch.arange(start + size, dtype=torch.int64),
        )
        outs.append(method.execute(inputs)[0][0].clone())
    return outs


def read_back(
    path: Path,
    model: StaticModel,
    *,
    tolerance: float,
    float_reference: list[torch.Tensor] | None = None,
) -> Readback:
    """Check ``path`` against ``model`` (eager, same weights and quantization).

    ``tolerance`` is relative to the largest reference logit. For a quantized model,
    ``float_reference`` (the float32 logits on ``probe_tokens``) also admits an error up to half
    of what quantization itself moves the logits: at default init (std 0.02) logits are small
    and int4 moves them a lot (seen: cosine 0.7 to float32 on LFM2-350M) while the program
    stays within cosine 0.99 of torchao's eager emulation. A wrong program (weights or state
    mixed up) differs by about the logits' own size and still fails.
    Raises ``ExportReadbackError``.
    """
    from executorch.runtime import Runtime

    try:
        program = Runtime.get().load_program(path)
    except (RuntimeError, ValueError) as exc:
        raise ExportReadbackError(f"{path}: the ExecuTorch runtime cannot load it: {exc}") from None
    names = tuple(sorted(program.method_names))
    expected = tuple(sorted(METHODS + CONSTANT_METHODS))
    if names != expected:
        raise ExportReadbackError(f"{path}: methods {list(names)}, expected {list(expected)}")
    constants = {
        "max_context": model.max_context, "prefill_chunk": model.chunk,
        "vocab_size": model.spec.vocab_size, "star_pte_format": PTE_FORMAT,
    }  # fmt: skip
    for name, value in constants.items():
        method = program.load_method(name)
        assert method is not None
        got = method.execute(())[0]
        if got != value:
            raise ExportReadbackError(f"{path}: constant method {name} = {got}, expected {value}")
    tokens = probe_tokens(model)
    model.reset()
    reference = model.run(tokens)
    model.reset()
    got_logits = run_program(path, tokens, model.chunk)
    scale = max(float(r.abs().max()) for r in reference)
    error = _max_diff(got_logits, reference)
    allowed = tolerance * max(1.0, scale)
    quant_error = None
    if float_reference is not None:
        quant_error = _max_diff(reference, float_reference)
        allowed = max(allowed, 0.5 * quant_error)
    if not error <= allowed:
        raise ExportReadbackError(
            f"{path}: logits differ from torch by {error:.3g} (max |logit| {scale:.3g}, "
            f"allowed {allowed:.3g}"
            + (f"; quantization itself moves them by {quant_error:.3g})" if quant_error else ")")
        )
    return Readback(methods=names, max_abs_error=error, logits_scale=scale,
                    quant_error=quant_error)


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))

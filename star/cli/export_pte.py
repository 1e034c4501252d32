"""``star export GENOME --runtime executorch -o model.pte``: any valid genome -> a checked .pte.

Called by ``star.cli.export.export`` (same options as the GGUF path plus ``--max-context`` and
``--prefill-chunk``). Exit codes as there: 2 for bad input (one line naming the option), 1 when
the export itself fails (lowering, or the read-back logits disagree with torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from star.cli.errors import fail, user_errors

# --quant spellings the executorch path takes ("f32" is the shared default of both paths)
PTE_QUANTS = {"f32": "fp32", "fp32": "fp32", "8da4w": "8da4w"}


def export_pte_command(
    genome: Path,
    *,
    output: Path | None,
    quant: str,
    scale: Any,
    weights: Path | None,
    random_seed: int | None,
    max_context: int | None,
    prefill_chunk: int,
    dry_run: bool,
    as_json: bool,
) -> None:
    from star.cli.export import load_spec, load_weights, print_result
    from star.export import ExportError
    from star.export.executorch.options import PteOptions

    if quant not in PTE_QUANTS:
        fail(f"--quant {quant} is a GGUF type; --runtime executorch takes fp32 or 8da4w")
    if weights is not None and random_seed is not None:
        fail("give --weights or --random-seed, not both")
    if output is None and not dry_run:
        fail("missing --output / -o (or use --dry-run)")
    if output is not None and output.suffix != ".pte":
        fail(f"--output {output}: an ExecuTorch program must end in .pte (star bench picks the "
             "runtime by suffix)")
    with user_errors():
        spec = load_spec(genome, scale)
    try:
        options = PteOptions.for_spec(
            spec, quant=PTE_QUANTS[quant], max_context=max_context, prefill_chunk=prefill_chunk
        )
    except ExportError as exc:
        fail(f"{genome}: not exportable: {exc}")
    result: dict[str, Any] = {
        "runtime": "executorch", "quant": options.quant.value,
        "max_context": options.max_context, "prefill_chunk": options.prefill_chunk,
    }  # fmt: skip
    if dry_run:
        result["written"] = False
    else:
        assert output is not None
        model, source = _model(spec, weights, random_seed, load_weights)
        try:
            from star.export.executorch import export_pte

            result = export_pte(model, output, options, in_place=True).to_dict()
        except ExportError as exc:
            fail(f"{genome}: export failed: {exc}", code=1)
        result["weights"] = source
    result.update({"genome": str(genome), "scale": scale.value})
    print_result(result, as_json=as_json)


def _model(spec: Any, weights: Path | None, random_seed: int | None, load_weights: Any
           ) -> tuple[Any, str]:
    """The StarModel to export: random from a seed, or the checkpoint's weights."""
    import torch

    from star.nn import StarModel

    if weights is None:
        seed = 0 if random_seed is None else random_seed
        model = StarModel(spec, device="cpu", dtype=torch.float32, seed=seed)
        return model, f"random (seed {seed})"
    state = load_weights(weights)
    model = StarModel(spec, device="cpu", dtype=torch.float32)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        fail(f"--weights {weights}: does not fit the genome at this scale: "
             f"{' '.join(line.strip() for line in first[:3])}")
    return model, str(weights)

"""``star export`` (genome -> GGUF for stock llama.cpp, a Hugging Face transformers folder with
``--format hf``, or with ``--runtime executorch`` a .pte for any genome, see star.cli.export_pte)
and ``star runtimes`` (targets)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from star.cli.errors import fail, progress, user_errors
from star.export.quant import Quant


class ScaleChoice(StrEnum):
    deploy = "deploy"  # the genome's own size
    proxy = "proxy"  # star.genome.PROXY: small width and vocabulary, same architecture


class FormatChoice(StrEnum):
    gguf = "gguf"  # one file for stock llama.cpp
    hf = "hf"  # a folder for transformers' AutoModelForCausalLM.from_pretrained


class RuntimeChoice(StrEnum):
    llama_cpp = "llama.cpp"  # a GGUF for stock llama.cpp (fixed architectures)
    executorch = "executorch"  # a .pte for the ExecuTorch runner (any genome)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("runtimes")(runtimes)


def print_result(result: dict[str, Any], *, as_json: bool) -> None:
    """An export's result: JSON, or a key/value table."""
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in result.items():
        table.add_row(key, str(value))
    Console().print(table)


def parse_gguf_quant(text: str) -> Quant:
    """``--quant`` for a GGUF: one of llama-quantize's types, case-insensitive."""
    try:
        return Quant(text.lower())
    except ValueError:
        pte = " (an executorch type: add --runtime executorch)" if text.lower() in (
            "fp32", "8da4w") else ""
        fail(f"--quant {text!r}{pte}: choose one of {', '.join(q.value for q in Quant)}")


def load_spec(genome: Path, scale: ScaleChoice) -> Any:
    """The ``ArchSpec`` of a genome YAML at the requested scale."""
    from star.genome import PROXY, load_genome, scale_spec

    spec = load_genome(genome).to_spec()
    return scale_spec(spec, PROXY) if scale == ScaleChoice.proxy else spec


def load_weights(path: Path) -> dict[str, Any]:
    """A torch checkpoint: a state dict, or a dict holding one under "model" / "state_dict"."""
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        fail(f"{path}: not a state dict (nor a dict with 'model' / 'state_dict')")
    return obj


def export(
    genome: Annotated[Path, typer.Argument(help="genome YAML", exists=True, dir_okay=False)],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="GGUF file to write (a folder with --format hf)"),
    ] = None,
    quant: Annotated[
        str,
        typer.Option(
            help="weight type: f32/f16 written here, the rest (q4_k_m, what most people ship, "
            "q5_k_m, q6_k, q8_0, q4_0, iq4_nl...) by llama-quantize from our f16; executorch: "
            "fp32 or 8da4w",
        ),
    ] = "f32",
    scale: Annotated[ScaleChoice, typer.Option(help="deploy: genome size; proxy: small")] = (
        ScaleChoice.deploy
    ),
    weights: Annotated[
        Path | None, typer.Option(help="torch checkpoint of a StarModel at this scale")
    ] = None,
    random_seed: Annotated[
        int | None, typer.Option(help="random weights from this seed (default 0)")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="check and validate only")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    fmt: Annotated[
        FormatChoice, typer.Option("--format", help="gguf: llama.cpp file; hf: transformers folder")
    ] = FormatChoice.gguf,
    force: Annotated[
        bool, typer.Option(help="hf: write into a non-empty folder (replaces the export's files)")
    ] = False,
    runtime: Annotated[
        RuntimeChoice, typer.Option(help="llama.cpp (GGUF) or executorch (.pte, any genome)")
    ] = RuntimeChoice.llama_cpp,
    max_context: Annotated[
        int | None, typer.Option(min=1, help="executorch: longest prompt + generation "
                                             "(default 8192)")
    ] = None,
    prefill_chunk: Annotated[
        int, typer.Option(min=1, help="executorch: prompt tokens per prefill call")
    ] = 128,
) -> None:
    """Export a genome to a GGUF that a stock llama.cpp runs exactly (checked before writing),
    with ``--format hf`` to a Hugging Face folder that transformers loads, or with
    ``--runtime executorch`` to a .pte (prefill + decode methods, read back and checked).

    Example: star export genomes/lfm2-350m.yaml --quant q4_k_m -o lfm2.gguf
    """
    if runtime == RuntimeChoice.executorch:
        from star.cli.export_pte import export_pte_command

        if fmt != FormatChoice.gguf:
            fail("--format applies to llama.cpp exports; --runtime executorch writes a .pte")
        export_pte_command(
            genome, output=output, quant=quant.lower(), scale=scale, weights=weights,
            random_seed=random_seed, max_context=max_context, prefill_chunk=prefill_chunk,
            dry_run=dry_run, as_json=as_json,
        )  # fmt: skip
        return
    if max_context is not None or prefill_chunk != 128:
        fail("--max-context and --prefill-chunk apply to --runtime executorch")
    gguf_quant = parse_gguf_quant(quant)
    if fmt == FormatChoice.hf:
        export_hf_folder(
            genome, output, quant=gguf_quant, scale=scale, weights=weights,
            random_seed=random_seed, dry_run=dry_run, force=force, as_json=as_json,
        )  # fmt: skip
        return
    from star.export import ExportError, UnsupportedGenome, plan_export, write_plan

    if weights is not None and random_seed is not None:
        fail("give --weights or --random-seed, not both")
    if output is None and not dry_run:
        fail("missing --output / -o (or use --dry-run)")
    with user_errors():
        spec = load_spec(genome, scale)
    try:
        from star.export import check_exportable

        check_exportable(spec)  # before building a possibly large model
        with progress(f"{spec.name}: building the model") as step:
            if weights is not None:
                state: Any = load_weights(weights)
                source = str(weights)
            else:
                import torch

                from star.nn import StarModel

                seed = 0 if random_seed is None else random_seed
                state = StarModel(spec, device="cpu", dtype=torch.float32, seed=seed)
                source = f"random (seed {seed})"
            step(f"{spec.name}: planning {gguf_quant.value} tensors")
            plan = plan_export(spec, state, quant=gguf_quant.value, name=spec.name)
            if dry_run:
                result: dict[str, Any] = {
                    "arch": plan.arch, "n_tensors": len(plan.tensors), "quant": plan.quant.value,
                    "tokenizer": plan.tokenizer, "written": False,
                }  # fmt: skip
            else:
                assert output is not None
                how = ("" if gguf_quant.value in ("f32", "f16")
                       else " (f16, then llama-quantize)")
                step(f"{spec.name}: writing {output}{how}, then reading it back")
                result = write_plan(plan, output).to_dict()
    except UnsupportedGenome as exc:
        fail(f"{genome}: not exportable: {exc}")
    except ExportError as exc:
        fail(f"{genome}: export failed: {exc}")
    result.update({"genome": str(genome), "scale": scale.value, "weights": source})
    print_result(result, as_json=as_json)
    if as_json:
        return
    if plan.tokenizer == "none":
        typer.echo(
            f"note: vocabulary {spec.vocab_size} < 259: tokenizer 'none' (token ids only, no text)",
            err=True,
        )


def model_weights(spec: Any, weights: Path | None, random_seed: int | None) -> tuple[Any, str]:
    """The weights to export and where they came from: a checkpoint, or ``StarModel`` drawn
    from ``random_seed`` (default 0), so one seed gives one model in every format."""
    if weights is not None:
        return load_weights(weights), str(weights)
    import torch

    from star.nn import StarModel

    seed = 0 if random_seed is None else random_seed
    return StarModel(spec, device="cpu", dtype=torch.float32, seed=seed), f"random (seed {seed})"


def export_hf_folder(
    genome: Path,
    output: Path | None,
    *,
    quant: Quant,
    scale: ScaleChoice,
    weights: Path | None,
    random_seed: int | None,
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> None:
    """``star export --format hf``: the genome as a transformers folder (star.export.hf)."""
    from star.export import (
        ExportError,
        UnsupportedGenome,
        check_hf_exportable,
        plan_hf_export,
        write_hf_plan,
    )

    if weights is not None and random_seed is not None:
        fail("give --weights or --random-seed, not both")
    if output is None and not dry_run:
        fail("missing --output / -o: the folder to write (or use --dry-run)")
    if quant not in (Quant.F32, Quant.F16):
        fail(f"--quant {quant.value}: --format hf writes f32 or f16 (quantised types are GGUF's)")
    if output is not None and not dry_run and not force:
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            fail(f"--output {output}: exists and is not an empty folder (--force to write into it)")
    with user_errors():
        spec = load_spec(genome, scale)
    try:
        check_hf_exportable(spec)  # before building a possibly large model
        state, source = model_weights(spec, weights, random_seed)
        plan = plan_hf_export(spec, state, dtype=quant.value)
        if dry_run:
            result: dict[str, Any] = {
                "architecture": plan.arch.architecture, "n_tensors": len(plan.tensors),
                "dtype": plan.dtype, "tokenizer": plan.tokenizer, "written": False,
            }  # fmt: skip
        else:
            assert output is not None
            result = write_hf_plan(plan, output, force=force).to_dict()
    except UnsupportedGenome as exc:
        fail(f"{genome}: no transformers equivalent: {exc}")
    except (ExportError, FileExistsError) as exc:
        fail(f"{genome}: export failed: {exc}")
    result.update({"format": "hf", "genome": str(genome), "scale": scale.value, "weights": source})
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_header=False, box=None)
        for key, value in result.items():
            table.add_row(key, str(value))
        Console().print(table)
    if plan.tokenizer == "none":
        typer.echo(
            f"note: vocabulary {spec.vocab_size} < 259: no tokenizer shipped (token ids only)",
            err=True,
        )


def runtimes(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Stock llama.cpp architectures the exporter writes, and what each runs exactly
    (``star export --runtime executorch`` takes any valid genome).

    Example: star runtimes --json
    """
    from star.export import supported_targets

    targets = supported_targets()
    if as_json:
        typer.echo(json.dumps([t.to_dict() for t in targets], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="export targets (stock llama.cpp architectures)", show_lines=True)
    table.add_column("arch", no_wrap=True, style="bold")
    table.add_column("token mixers", min_width=14)
    table.add_column("channel mixers", min_width=14)
    table.add_column("norms")
    table.add_column("RoPE", max_width=22)
    table.add_column("constraints", min_width=48, ratio=1)
    for t in targets:
        table.add_row(
            t.name,
            "\n".join(t.token_mixers),
            "\n".join(t.channel_mixers),
            "\n".join(t.norms),
            t.rope,
            "\n".join(f"- {c}" for c in t.constraints),
        )
    Console(width=None if sys.stdout.isatty() else 150).print(table)
    typer.echo(
        "not exportable anywhere: linear attention, LayerNorm, short conv mixed with Mamba-2, "
        "MoE outside lfm2moe",
        err=True,
    )

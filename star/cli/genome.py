"""``star genome``: validate, inspect, sample and mutate architecture genomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from star.cli.errors import user_errors

genome_app = typer.Typer(help="Validate, inspect, sample and mutate genomes.",
                         no_args_is_help=True)
console = Console(highlight=False, width=140)

FileArg = Annotated[Path, typer.Argument(help="genome YAML file", show_default=False)]


def register(app: typer.Typer) -> None:
    app.add_typer(genome_app, name="genome")


@genome_app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="genome YAML files")]) -> None:
    """Check genome files; print every problem with its field path."""
    from star.genome import InvalidGenome, load_genome

    bad = 0
    for path in files:
        try:
            genome = load_genome(path)
        except InvalidGenome as exc:
            bad += 1
            for problem in exc.problems:
                console.print(f"[red]{path}[/]: {problem}")
            continue
        except OSError as exc:
            bad += 1
            console.print(f"[red]{path}[/]: {exc.strerror or exc}")
            continue
        console.print(f"[green]ok[/] {path}  id={genome.genome_id[:16]}  "
                      f"layers={genome.to_spec().n_layers}")
    if bad:
        raise typer.Exit(1)


def _stats_dict(path: Path, cache_bytes: float) -> dict[str, object]:
    from star.cost import analyze
    from star.genome import load_genome

    genome = load_genome(path)
    spec = genome.to_spec()
    report = analyze(spec, cache_bytes_per_element=cache_bytes)
    out: dict[str, object] = {"file": str(path), "name": spec.name, "genome_id": genome.genome_id}
    out.update(report.to_dict())
    return out


@genome_app.command()
def stats(
    files: Annotated[list[Path], typer.Argument(help="genome YAML files")],
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    cache_bytes: Annotated[int, typer.Option(
        "--cache-bytes-per-element", help="KV cache bytes per element (1 = q8, 2 = f16)",
        min=1, max=4)] = 2,
) -> None:
    """Analytic costs: parameters, weight bytes per quantization, KV and state bytes, FLOPs."""
    with user_errors():
        rows = [_stats_dict(p, cache_bytes) for p in files]
    if json_out:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return
    table = Table(title=f"genome stats (KV at {cache_bytes} B/element)")
    for col in ("genome", "layers", "params", "active", "Q4_0 MB", "KV B/token",
                "KV MiB @32K", "state KiB"):
        table.add_column(col, justify="right" if col != "genome" else "left")
    for r in rows:
        kv = float(r["kv_bytes_per_token"])  # type: ignore[arg-type]
        kv32 = r["kv_bytes"][32768]  # type: ignore[index]
        wb = r["weight_bytes"]
        assert isinstance(wb, dict)
        table.add_row(
            str(r["name"]), str(r["n_layers"]), f"{r['params']:,}", f"{r['active_params']:,}",
            f"{wb['q4_0'] / 1e6:,.1f}", f"{kv:,.0f}", f"{kv32 / 2**20:,.0f}",
            f"{int(r['state_bytes']) / 1024:,.0f}",  # type: ignore[call-overload]
        )
    console.print(table)


@genome_app.command()
def random(
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    like: Annotated[Path | None, typer.Option(
        help="take vocabulary and numerics from this genome")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="write YAML here")] = None,
) -> None:
    """Sample a random valid genome (prints YAML)."""
    import numpy as np

    from star.genome import Genome, load_genome, random_genome

    with user_errors():
        base = load_genome(like).genes if like else None
        genome = Genome(random_genome(np.random.default_rng(seed), base=base),
                        name=f"random-{seed}")
    _emit(genome.to_yaml(), out)


@genome_app.command()
def mutate(
    file: FileArg,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    resolution: Annotated[str | None, typer.Option(
        help="backbone | operator | featurizer (default: random)")] = None,
    n: Annotated[int, typer.Option(help="number of successive mutations", min=1)] = 1,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="write YAML here")] = None,
) -> None:
    """Apply mutations to a genome (always yields a valid genome)."""
    import numpy as np

    from star.genome import Genome, Resolution, load_genome
    from star.genome import mutate as mutate_vector

    with user_errors():
        if resolution is not None and resolution not in {r.value for r in Resolution}:
            from star.cli.errors import UserError

            raise UserError(f"--resolution: unknown value {resolution!r}; "
                            "expected backbone, operator or featurizer")
        genome = load_genome(file)
        rng = np.random.default_rng(seed)
        genes = genome.genes
        for _ in range(n):
            genes = mutate_vector(genes, rng, Resolution(resolution) if resolution else None)
        child = Genome(genes, name=f"{genome.name}-mut{seed}" if genome.name else "")
    _emit(child.to_yaml(), out)


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        print(text, end="")
    else:
        out.write_text(text)
        console.print(f"wrote {out}")

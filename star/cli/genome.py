"""``star genome``: validate, inspect, sample and mutate architecture genomes."""

from __future__ import annotations

import json
from collections.abc import Callable
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
def validate(
    files: Annotated[list[Path], typer.Argument(help="genome YAML files")],
    require_export: Annotated[bool, typer.Option(
        "--require-export", help="also fail (exit 1) when a genome does not export")] = False,
) -> None:
    """Check genome files: problems with their field paths, and whether each exports.

    For a valid genome: the llama.cpp arch it exports to, or why not (layer and operator) and
    the nearest arch that `star genome fit` would bring it to.

    Example: star genome validate genomes/*.yaml
    """
    from star.export import UnsupportedGenome, check_exportable
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
        spec = genome.to_spec()
        try:
            verdict = f"exports: llama.cpp arch {check_exportable(spec).name}"
        except UnsupportedGenome as exc:
            bad += require_export
            verdict = (f"[yellow]does not export[/]: {exc}; nearest exportable: "
                       f"{_nearest_arch(genome.genes)} (`star genome fit`)")
        console.print(f"[green]ok[/] {path}  id={genome.genome_id[:16]}  "
                      f"layers={spec.n_layers}  {verdict}", soft_wrap=True)
    if bad:
        raise typer.Exit(1)


def _nearest_arch(genes: tuple[int, ...]) -> str:
    from star.search.runtime_fit import rank_fits

    fits = rank_fits(genes)
    return f"{fits[0].arch} (edit cost {fits[0].cost:g})" if fits else "none"


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
    """Analytic costs: parameters, weight bytes per quantization, KV and state bytes, FLOPs.

    Example: star genome stats genomes/lfm2-1.2b.yaml --json
    """
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


ArchOpt = Annotated[list[str] | None, typer.Option(
    "--arch", help="llama.cpp arch the genome must export to (repeatable; default: any)")]
RawOpt = Annotated[bool, typer.Option(
    "--raw", help="the unconstrained genome, not fitted to a runtime (may not export)")]
OutOpt = Annotated[Path | None, typer.Option("--output", "-o", "--out", help="write YAML here")]
_TRIES = 50  # random samples (or mutation draws) before a restricted fit is declared impossible


def _archs(values: list[str] | None) -> tuple[str, ...] | None:
    """``--arch`` values checked against the exporter's targets."""
    if not values:
        return None
    from star.cli.errors import UserError
    from star.export import supported_targets

    names = [t.name for t in supported_targets()]
    for value in values:
        if value not in names:
            raise UserError(f"--arch: unknown llama.cpp arch {value!r}; expected one of {names}")
    return tuple(dict.fromkeys(values))


def _arch_of(genes: tuple[int, ...]) -> str | None:
    from star.export import UnsupportedGenome, check_exportable
    from star.genome import Genome

    try:
        return check_exportable(Genome(genes).to_spec()).name
    except UnsupportedGenome:
        return None


def _native_constraint(archs: tuple[str, ...] | None) -> Callable[..., tuple[int, ...] | None]:
    """Fit to the nearest exportable arch (of ``archs``) at the genome's own scale."""
    from star.search.runtime_fit import make_constraint

    return make_constraint(lambda g: g.to_spec(), allowed_archs=archs)


def _opts(archs: tuple[str, ...] | None, raw: bool) -> str:
    return "".join(f" --arch {a}" for a in archs or ()) + (" --raw" if raw else "")


def _header(*lines: str) -> str:
    return "".join(f"# {line}\n" for line in lines)


@genome_app.command()
def random(
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    like: Annotated[Path | None, typer.Option(
        help="take vocabulary and numerics from this genome")] = None,
    arch: ArchOpt = None,
    raw: RawOpt = False,
    out: OutOpt = None,
) -> None:
    """Sample a random genome that stock llama.cpp runs (prints YAML).

    The random genome is fitted to the nearest exportable llama.cpp arch (--arch restricts
    which); --raw gives the unconstrained sample.

    Example: star genome random --seed 3 --arch lfm2 -o g.yaml
    """
    import numpy as np

    from star.cli.errors import UserError
    from star.genome import Genome, load_genome, random_genome

    with user_errors():
        archs = _archs(arch)
        if raw and archs:
            raise UserError("--raw: give --raw or --arch, not both")
        base = load_genome(like).genes if like else None
        rng = np.random.default_rng(seed)
        genes = random_genome(rng, base=base)
        if not raw:
            constraint = _native_constraint(archs)
            fitted = constraint(genes)
            for _ in range(_TRIES):
                if fitted is not None:
                    break
                fitted = constraint(random_genome(rng, base=base))
            if fitted is None:
                raise UserError(f"--arch: no random genome exports to {archs} "
                                f"in {_TRIES} samples")
            genes = fitted
        genome = Genome(genes, name=f"random-{seed}")
    target = _arch_of(genome.genes)
    head = _header(f"Random genome (star genome random --seed {seed}"
                   + (f" --like {like}" if like else "") + _opts(archs, raw) + ")",
                   f"llama.cpp arch: {target}" if target else
                   "llama.cpp arch: none (unconstrained: star genome validate says why)")
    _emit(head + genome.to_yaml(), out)



@genome_app.command()
def mutate(
    file: FileArg,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    resolution: Annotated[str | None, typer.Option(
        help="backbone | operator | featurizer (default: random)")] = None,
    n: Annotated[int, typer.Option(help="number of successive mutations", min=1)] = 1,
    arch: ArchOpt = None,
    keep_arch: Annotated[bool, typer.Option(
        "--keep-arch", help="stay in the parent's llama.cpp arch")] = False,
    raw: RawOpt = False,
    out: OutOpt = None,
) -> None:
    """Mutate a genome into one that stock llama.cpp runs (prints YAML).

    Each mutant is fitted to the nearest exportable llama.cpp arch, which may be another family
    than the parent's (--arch / --keep-arch restrict it, --raw skips the fit).

    Example: star genome mutate genomes/lfm2-350m.yaml --seed 1 -o m.yaml
    """
    import numpy as np

    from star.cli.errors import UserError
    from star.genome import Genome, Resolution, load_genome
    from star.genome import mutate as mutate_vector

    with user_errors():
        if resolution is not None and resolution not in {r.value for r in Resolution}:
            raise UserError(f"--resolution: unknown value {resolution!r}; "
                            "expected backbone, operator or featurizer")
        res = Resolution(resolution) if resolution else None
        archs = _archs(arch)
        if raw and (archs or keep_arch):
            raise UserError("--raw: give --raw or --arch / --keep-arch, not both")
        genome = load_genome(file)
        parent_arch = _arch_of(genome.genes)
        if keep_arch:
            if parent_arch is None:
                raise UserError(f"--keep-arch: {file} does not export "
                                "(star genome validate says why)")
            archs = (parent_arch,)
        rng = np.random.default_rng(seed)
        genes = genome.genes
        if raw:
            for _ in range(n):
                genes = mutate_vector(genes, rng, res)
        else:
            from star.search.operators import mutate_constrained

            constraint = _native_constraint(archs)
            for step in range(n):
                child = mutate_constrained(genes, rng, constraint, resolution=res)
                if child is None:
                    raise UserError(f"mutation {step + 1}: no exportable mutant "
                                    f"(arch {archs or 'any'}) in {_TRIES} draws")
                genes = child
        child_genome = Genome(genes, name=f"{genome.name}-mut{seed}" if genome.name else "")
    target = _arch_of(child_genome.genes)
    moved = f" (parent: {parent_arch})" if target != parent_arch else ""
    head = _header(f"Mutant of {genome.name or file} (star genome mutate --seed {seed} --n {n}"
                   + (f" --resolution {resolution}" if resolution else "")
                   + (" --keep-arch" if keep_arch else _opts(archs, raw)) + ")",
                   f"llama.cpp arch: {target or 'none (star genome validate says why)'}{moved}")
    _emit(head + child_genome.to_yaml(), out)


@genome_app.command()
def fit(
    file: FileArg,
    arch: ArchOpt = None,
    out: OutOpt = None,
) -> None:
    """Fit a genome to the nearest llama.cpp arch that runs it (prints YAML).

    Nearest = fewest per-layer edits (star.search.runtime_fit), e.g. for a linear-attention
    hybrid or a short conv + SSM mix; --arch restricts the archs.

    Example: star genome fit genomes/hybrid-linear-attn-350m.yaml -o fitted.yaml
    """
    from star.cli.errors import UserError
    from star.genome import Genome, load_genome
    from star.search.runtime_fit import rank_fits

    with user_errors():
        archs = _archs(arch)
        genome = load_genome(file)
        constraint = _native_constraint(archs)
        fitted = constraint(genome.genes)
        if fitted is None:
            raise UserError(f"--arch: {file} cannot be fitted to {archs}")
        cost = next((f.cost for f in rank_fits(genome.genes, allowed_archs=archs)
                     if f.genes == fitted), 0.0)
        result = Genome(fitted, name=genome.name)
    target = _arch_of(fitted)
    head = _header(f"{genome.name or file} fitted to llama.cpp arch {target} "
                   f"(star genome fit; edit cost {cost:g}"
                   + (": unchanged" if fitted == genome.genes else "") + ")")
    _emit(head + result.to_yaml(), out)


@genome_app.command()
def match(
    file: FileArg,
    params_like: Annotated[Path, typer.Option(
        "--params-like", help="reference genome whose parameter count to match",
        show_default=False)],
    by: Annotated[str, typer.Option(help="width (depth fixed) | depth (width fixed)")] = "width",
    count: Annotated[str, typer.Option(
        help="total | non-embedding: which of REF's counts to match")] = "total",
    keep_embedding: Annotated[bool, typer.Option(
        "--keep-embedding", help="keep GENOME's vocabulary, embedding and context "
        "(default: take REF's, so only the architecture differs)")] = False,
    tolerance: Annotated[float, typer.Option(
        help="largest relative parameter-count error accepted", min=0.0, max=1.0)] = 0.02,
    out: OutOpt = None,
) -> None:
    """A size-matched baseline: GENOME (same llama.cpp arch) rescaled to REF's parameter count.

    Width scaling keeps depth, head_dim and the GQA ratio; the FFN width takes the remainder
    (star.genome.match). Prints the matched counts and KV bytes per token; the result must
    export to GENOME's arch.

    Example:
        star genome match genomes/llama-3.2-1b.yaml --params-like genomes/lfm2-350m.yaml \
        -o llama-354m.yaml
    """
    from star.cli.errors import UserError
    from star.export import UnsupportedGenome, check_exportable
    from star.genome import load_genome
    from star.genome.match import MatchError, match_params

    with user_errors():
        if by not in ("width", "depth"):
            raise UserError(f"--by: unknown value {by!r}; expected width or depth")
        if count not in ("total", "non-embedding"):
            raise UserError(f"--count: unknown value {count!r}; expected total or non-embedding")
        genome, ref = load_genome(file), load_genome(params_like)
        try:
            arch = check_exportable(genome.to_spec()).name
        except UnsupportedGenome as exc:
            raise UserError(f"{file}: does not export ({exc}); fit it first: "
                            "star genome fit") from None
        try:
            result = match_params(genome, ref, by=by,  # type: ignore[arg-type]
                                  count="total" if count == "total" else "non_embedding",
                                  keep_embedding=keep_embedding, tolerance=tolerance)
        except MatchError as exc:
            raise UserError(f"--params-like: {exc}") from None
        try:
            matched_arch = check_exportable(result.genome.to_spec()).name
        except UnsupportedGenome as exc:
            raise UserError(f"the matched genome does not export: {exc}") from None
        if matched_arch != arch:
            raise UserError(f"the matched genome exports as {matched_arch}, not {arch}")
    from star.cli.genome_match import match_header, match_table

    info = Console(highlight=False, width=140, stderr=out is None)
    info.print(match_table(genome, ref, result, arch))
    _emit(match_header(file, params_like, genome, ref, result, arch, keep_embedding)
          + result.genome.to_yaml(), out)


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        print(text, end="")
    else:
        out.write_text(text)
        console.print(f"wrote {out}")

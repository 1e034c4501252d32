"""``star search run|status|resume|stop`` and ``star frontier``.

The search engine talks to the lab database directly (``database_url`` of lab_config.yaml /
``STAR_DATABASE_URL``) and writes artifacts into the coordinator's artifact store; the
coordinator and its agents may run anywhere else. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from star.cli.errors import fail

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="lab_config.yaml (default: $STAR_CONFIG)")
]
RunArg = Annotated[str, typer.Argument(help="run name (or id)")]
ProgressOpt = Annotated[
    bool, typer.Option("--progress/--no-progress",
                       help="live bars: generations, exported / trained / measured, ETA")
]

search_app = typer.Typer(help="Hardware-in-the-loop NSGA-II search runs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(search_app, name="search")
    app.command("frontier")(frontier)


def _settings(config: Path | None) -> Any:
    from star.config import load_settings

    try:
        return load_settings(config)
    except (FileNotFoundError, ValueError) as exc:
        fail(f"configuration: {exc}")


def _open_db(settings: Any) -> Any:
    from star.db import Database, SchemaOutOfDateError, require_current_schema

    db = Database(settings.db_url)
    try:
        require_current_schema(db.engine)
    except SchemaOutOfDateError as exc:
        fail(str(exc), code=1)
    return db


def _logging(verbose: bool) -> None:
    """The engine's progress (``star.search`` loggers) on stderr; other loggers untouched."""
    from rich.console import Console
    from rich.logging import RichHandler

    logger = logging.getLogger("star.search")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(getattr(h, "_star_search", False) for h in logger.handlers):
        handler = RichHandler(console=Console(stderr=True), show_path=False)
        handler._star_search = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def _drive(engine: Any, max_generations: int | None, *, progress: bool = True) -> None:
    """Run the engine under a live progress display; SIGTERM asks it to stop at the next phase
    boundary."""
    from star.cli.progress import SearchProgress
    from star.db.repo import lifecycle

    def _term(_signum: int, _frame: object) -> None:
        with engine.db.session_scope() as s:
            lifecycle.request_stop(s, run_id=engine.run_id)

    previous = signal.signal(signal.SIGTERM, _term)
    try:
        if progress:
            with SearchProgress(engine):
                status = engine.run(max_generations=max_generations)
        else:
            status = engine.run(max_generations=max_generations)
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo(f"run {engine.run_name}: {status.value} "
               f"({engine.next_index}/{engine.config.generations} generations told)")
    if status.value == "failed":
        raise typer.Exit(1)


@search_app.command("run")
def search_run(
    config: ConfigOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="run name (overrides search.name)")] = (
        None
    ),
    max_generations: Annotated[
        int | None, typer.Option(help="stop after this many generations (resume continues)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    progress: ProgressOpt = True,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="check the config, print what it would measure and the estimated "
        "device time; write nothing")] = False,
) -> None:
    """Start a run from the `search:` section of lab_config.yaml (checked before it starts).

    Example: star search run --config studies/lfm2-vs-transformer.yaml --dry-run
    """
    from star.config import config_file
    from star.db.errors import AlreadyExistsError
    from star.db.store import ArtifactStore
    from star.search.config import SearchConfigError, load_search_config
    from star.search.engine import SearchEngine

    settings = _settings(config)
    path = config or config_file()
    if path is None:
        fail("--config: no lab_config.yaml given (and none in the current directory)")
    try:
        search = load_search_config(Path(path), name=name)
    except SearchConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"error: search.{problem}", err=True)
        raise typer.Exit(2) from None
    if dry_run:
        _dry_run(search, settings)
        return
    db = _open_db(settings)
    _logging(verbose)
    try:
        engine = SearchEngine.create(db, ArtifactStore(settings.store_dir), search)
    except SearchConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"error: search.{problem}", err=True)
        raise typer.Exit(2) from None
    except AlreadyExistsError:
        fail(f"--name: a run named {search.name!r} exists; `star search resume {search.name}` "
             "continues it")
    _drive(engine, max_generations, progress=progress)


def _readonly_db(settings: Any) -> Any | None:
    """The lab database if it exists and is current, without creating anything."""
    from sqlalchemy.engine import make_url

    from star.db import Database, SchemaOutOfDateError, require_current_schema

    url = make_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).exists():
            return None
    db = Database(settings.db_url)
    try:
        require_current_schema(db.engine)
    except (SchemaOutOfDateError, Exception):  # noqa: BLE001 - unreachable or old: not read
        db.dispose()
        return None
    return db


def _dry_run(search: Any, settings: Any) -> None:
    """What ``search`` would measure and roughly how long devices would take; writes nothing."""
    from star.search.config import SearchConfigError, check_devices
    from star.search.objectives import describe, short_context
    from star.search.plan import plan

    db = _readonly_db(settings)
    if db is None:
        typer.echo(f"devices: not checked ({settings.db_url} does not exist or is not current)")
        result = plan(search)
    else:
        try:
            with db.session_scope(readonly=True) as s:
                try:
                    check_devices(search, s)
                except SearchConfigError as exc:
                    for problem in exc.problems:
                        typer.echo(f"error: search.{problem}", err=True)
                    raise typer.Exit(2) from None
                result = plan(search, session=s)
        finally:
            db.dispose()
    cfg = search
    typer.echo(f"run {cfg.name!r}: {cfg.generations} generations x {cfg.population} candidates, "
               f"seed {cfg.seed}; config OK (nothing written)")
    typer.echo("objectives: " + ", ".join(describe(k) for k in cfg.objective_keys()))
    for b in cfg.bounds():
        typer.echo(f"budget: {describe(b.key)} {'>=' if b.lower else '<='} {b.limit:g}")
    if cfg.baselines:
        typer.echo("baselines: " + ", ".join(f"{b.name} ({b.genome})" for b in cfg.baselines))
    if cfg.runtime == "executorch":
        typer.echo(f"runtime: executorch (.pte, any genome, XNNPACK); quant {cfg.pte_quant}; "
                   f"{cfg.repetitions} repetitions, n_gen {cfg.n_gen}")
    else:
        typer.echo(f"runtime: llama.cpp; flash attention: "
                   f"{', '.join('on' if f else 'off' for f in cfg.flash_attn)}; quant "
                   f"{cfg.quant.value}; {cfg.repetitions} repetitions, n_gen {cfg.n_gen}")

    def ctx(cs: Any) -> str:
        return ",".join(short_context(c) for c in cs)

    typer.echo(f"{'stage':<10} {'device class':<18} {'contexts':<12} {'models':>6} "
               f"{'jobs':>6} {'device time':>12}")
    for r in result.rows:
        typer.echo(f"{r.stage:<10} {r.device_class:<18} {ctx(r.contexts):<12} "
                   f"{r.candidates:>6} {r.jobs:>6} {_duration(r.seconds):>12}")
    typer.echo(f"total estimated device time: {_duration(result.seconds)}"
               + (f" (every candidate at every context: {_duration(result.unstaged_seconds)})"
                  if cfg.staging is not None else ""))
    for device_class, source in result.speed.items():
        typer.echo(f"speed of {device_class}: {source}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@search_app.command("resume")
def search_resume(
    run: RunArg,
    config: ConfigOpt = None,
    force: Annotated[
        bool, typer.Option(help="even if another engine seems to be running it")
    ] = False,
    max_generations: Annotated[int | None, typer.Option(help="stop after this many")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    progress: ProgressOpt = True,
) -> None:
    """Continue a stopped, failed or crashed run (deterministic replay of told generations).

    Example: star search resume s24-run
    """
    from star.db.errors import NotFoundError
    from star.db.store import ArtifactStore
    from star.search.engine import SearchEngine, SearchError

    settings = _settings(config)
    db = _open_db(settings)
    _logging(verbose)
    try:
        engine = SearchEngine.open(db, ArtifactStore(settings.store_dir), run, force=force)
    except NotFoundError as exc:
        fail(f"RUN: {exc}")
    except SearchError as exc:
        fail(str(exc))
    _drive(engine, max_generations, progress=progress)


@search_app.command("stop")
def search_stop(run: RunArg, config: ConfigOpt = None) -> None:
    """Ask the run's engine to stop at its next phase boundary (jobs already queued stay).

    Example: star search stop s24-run
    """
    from star.db.errors import NotFoundError
    from star.db.repo import lifecycle
    from star.search import store

    db = _open_db(_settings(config))
    try:
        with db.session_scope() as s:
            snap = store.resolve_run(s, run)
            snap = lifecycle.request_stop(s, run_id=snap.id)
    except NotFoundError as exc:
        fail(f"RUN: {exc}")
    status = snap.status.value if snap.status else None
    if status == "running":
        typer.echo(f"run {snap.name}: stop requested; the engine stops at its next phase")
    else:
        typer.echo(f"run {snap.name} is {status}; a stop is recorded")


@search_app.command("list")
def search_list(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Every run of the lab with its status and progress.

    Example: star search list --json
    """
    from star.db import repo
    from star.search import store

    db = _open_db(_settings(config))
    with db.session_scope(readonly=True) as s:
        rows = [dict(store.run_summary(s, r)) for r in repo.list_runs(s)
                if "search" in (r.config or {})]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "run", "status", "generations", "candidates", "jobs done/all",
                  "last heard from")
    for r in rows:
        told = sum(1 for g in r["generations"] if g["told"])
        jobs = r["jobs"]
        done = sum(jobs.get(k, 0) for k in ("done", "failed", "cancelled"))
        status = (r["status"] or "-") + (f" ({r['status_reason']})" if r["status_reason"]
                                         else "")
        table.add_row(str(r["id"]), r["run"], status, f"{told}/{r['generations_planned']}",
                      str(r["candidates"]), f"{done}/{sum(jobs.values())}",
                      (r["heartbeat_at"] or "-")[:19])
    Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(table)


@search_app.command("delete")
def search_delete(
    run: RunArg,
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Delete a run and what it made: candidates, their jobs, measurements and GGUF files.

    A running run is refused (stop it first). Example: star search delete old-run --yes
    """
    from star.db import repo
    from star.db.errors import ConflictError, NotFoundError
    from star.db.store import ArtifactStore
    from star.search import store

    settings = _settings(config)
    db = _open_db(settings)
    try:
        with db.session_scope(readonly=True) as s:
            snap = store.resolve_run(s, run)
    except NotFoundError as exc:
        fail(f"RUN: {exc}")
    if not yes and not typer.confirm(f"delete run {snap.name!r} (id {snap.id}) and its "
                                     "measurements?"):
        raise typer.Exit(1)
    try:
        with db.session_scope() as s:
            counts = repo.delete_run(s, run_id=snap.id)
    except ConflictError as exc:
        fail(f"RUN: {exc}", code=1)
    artifacts = ArtifactStore(settings.store_dir)
    for relative in counts.pop("paths"):
        artifacts.resolve(relative).unlink(missing_ok=True)
    typer.echo(f"deleted run {snap.name!r}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@search_app.command("status")
def search_status(
    run: RunArg,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """A run's status, generations (phase, feasible counts) and its jobs by state.

    Example: star search status s24-run --json
    """
    from star.db.errors import NotFoundError
    from star.search import store

    db = _open_db(_settings(config))
    try:
        with db.session_scope(readonly=True) as s:
            summary = dict(store.run_summary(s, store.resolve_run(s, run)))
    except NotFoundError as exc:
        fail(f"RUN: {exc}")
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    reason = f" ({summary['status_reason']})" if summary["status_reason"] else ""
    console.print(f"run [bold]{summary['run']}[/] (id {summary['id']}): {summary['status']}"
                  f"{reason}; {summary['candidates']} candidates; jobs {summary['jobs']}")
    table = Table("generation", "phase", "candidates", "feasible", "infeasible")
    for g in summary["generations"]:
        table.add_row(str(g["index"]), str(g["phase"]), str(g["candidates"]),
                      "" if g["feasible"] is None else str(g["feasible"]),
                      str(g["infeasible"]) if g["told"] else "")
    console.print(table)
    planned = summary["generations_planned"]
    console.print(f"{sum(g['told'] for g in summary['generations'])}/{planned} generations told")


def frontier(
    run: RunArg,
    config: ConfigOpt = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="a device name, or a device class (kind[:tag]) to read "
                                      "the measured objectives on"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="write a PNG plot here")] = None,
    x: Annotated[str | None, typer.Option("--x", help="objective on the plot's x axis")] = None,
    y: Annotated[str | None, typer.Option("--y", help="objective on the plot's y axis")] = None,
) -> None:
    """The Pareto frontier of a run, computed from its stored rows (table, JSON, plot).

    Example: star frontier s24-run --device android:s24 --plot frontier.png
    """
    from star.db.errors import NotFoundError
    from star.search.frontier import FrontierError, plot_frontier, run_frontier

    db = _open_db(_settings(config))
    try:
        report = run_frontier(db, run, device=device)
        if plot is not None:
            plot_frontier(report, plot, x=x, y=y)
    except NotFoundError as exc:
        fail(f"RUN: {exc}")
    except FrontierError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from star.report.strip import layer_pattern, mix_summary
    from star.search.objectives import describe

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    where = f" on {report.device}" if report.device else ""
    if report.runtime != "llama.cpp":
        where += f" ({report.runtime})"
    asked = [p for p in report.points if p.role != "baseline"]
    feasible = sum(p.feasible for p in asked)
    console.print(f"run [bold]{report.run}[/]{where}: {len(asked)} candidates, {feasible} "
                  f"feasible, {len(report.front)} on the frontier (measured figures only)")
    specs = _deploy_specs(db, report)
    table = Table("id", "architecture", "layers", "gen",
                  *(describe(o, with_device=False) for o in report.objectives),
                  caption="layers: A attention, W sliding window, C short conv, S SSM, "
                          "L linear attention; device figures at each candidate's better "
                          "flash-attention setting")
    rows = sorted(report.front, key=lambda p: [p.values[o] or 0.0 for o in report.objectives])
    baselines = [p for p in report.points if p.role == "baseline"]
    for p in [*rows, *baselines]:
        spec = specs.get(p.candidate_id)
        name = f"{p.arch or '?'} · {mix_summary(spec) if spec else ''} · {p.genome_id[:8]}"
        if p.role == "baseline":
            name = f"[bold]baseline {p.label}[/] · {name}"
        table.add_row(str(p.candidate_id), name, layer_pattern(spec) if spec else "",
                      "-" if p.generation is None else str(p.generation),
                      *(_fmt(p.values[o]) + ("*" if o in p.estimated else "")
                        for o in report.objectives))
    console.print(table)
    if any(p.estimated for p in baselines):
        console.print("* estimated from the screening contexts (not confirmed)")
    if plot is not None:
        console.print(f"plot: {plot}")


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v == float("inf"):
        return "OOM"
    return f"{v:.4g}"


def _deploy_specs(db: Any, report: Any) -> dict[int, Any]:
    """The stored deployment-scale arch spec of each candidate shown (for its layer strip)."""
    from star.db import repo

    with db.session_scope(readonly=True) as s:
        return {c.id: (c.arch_spec or {}).get("deploy")
                for c in repo.list_candidates(s, run_id=report.run_id)}

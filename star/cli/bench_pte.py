"""``star bench MODEL.pte``: the ExecuTorch branch of ``star bench`` (picked by the suffix).

Same figures, table and exit codes as the GGUF path (star.cli.bench): 0 every context measured
(or out of memory), 1 a context failed or the runner could not be built, 2 invalid input.
"""

from __future__ import annotations

from pathlib import Path

import typer

from device_agents.llamacpp.commands import BenchInputError


def bench_pte(
    model: Path,
    *,
    contexts: list[int],
    repeats: int,
    threads: int,
    n_gen: int,
    cpu_mask: str | None,
    timeout: float | None,
    runner: Path | None,
    profile_dir: Path | None,
    as_json: bool,
) -> None:
    from device_agents.executorch import PteBenchSettings, run_pte_bench, validate_pte
    from device_agents.schemas import BenchReport

    def refuse(message: str, code: int = 2) -> typer.Exit:
        typer.echo(f"error: {message}", err=True)
        return typer.Exit(code)

    try:
        settings = PteBenchSettings(threads=threads, n_gen=n_gen, repetitions=repeats,
                                    cpu_mask=cpu_mask)
        validate_pte(model, contexts, n_gen=n_gen)  # before any (possibly slow) build
    except BenchInputError as exc:
        raise refuse(str(exc)) from None
    build_flags: list[str] = []
    if runner is None:
        from star.runtime import RuntimeBuildError
        from star.runtime.executorch import ensure_executorch_runner

        try:
            info = ensure_executorch_runner()
        except RuntimeBuildError as exc:
            raise refuse(str(exc), 1) from None
        runner, build_flags = info.runner, list(info.compile_flags)
    elif not runner.is_file():
        raise refuse(f"runner not found: {runner}")
    from star.cli.errors import progress

    try:
        with progress(f"star-et-bench: {model.name} at {', '.join(map(str, contexts))} tokens, "
                      f"{repeats} repetitions"):
            report = run_pte_bench(model, contexts, settings, runner, build_flags=build_flags,
                                   timeout_s=timeout, profile_dir=profile_dir)
    except BenchInputError as exc:
        raise refuse(str(exc)) from None
    assert isinstance(report, BenchReport)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        from star.cli.bench import _print_table

        _print_table(model, report)
        if profile_dir is not None:
            typer.echo(f"ETDump profiles: {profile_dir}", err=True)
    if any(c.error is not None for c in report.contexts):
        raise typer.Exit(1)

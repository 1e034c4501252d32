"""``star runtime build`` / ``star runtime info``: the pinned llama.cpp, built for this host or
cross-built for phones (``--target android-arm64``: a static aarch64 llama-bench, no NDK); with
``--runtime executorch`` the ExecuTorch benchmark runner (star.runtime.executorch)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer


class RuntimeKind(StrEnum):
    llama_cpp = "llama.cpp"
    executorch = "executorch"


RuntimeOption = Annotated[
    RuntimeKind, typer.Option("--runtime", help="llama.cpp, or executorch (the .pte runner)")
]

runtime_app = typer.Typer(
    help="The pinned llama.cpp runtime (built once per host into the cache).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(runtime_app, name="runtime")


def _print_info(info_dict: dict[str, object]) -> None:
    for key in ("version", "commit", "build_number", "llama_bench", "llama_quantize",
                "llama_completion", "lib_dir", "cpu_model", "root"):
        typer.echo(f"{key + ':':18}{info_dict[key]}")
    typer.echo(f"{'build_flags:':18}{' '.join(info_dict['build_flags'])}")  # type: ignore[arg-type]


HOST = "host"
TargetOpt = Annotated[
    str,
    typer.Option("--target", help="host, android-arm64 (armv8.2-a+dotprod) or "
                 "android-arm64-compat (armv8-a, older phones)"),
]


def _print_phone(info_dict: dict[str, object]) -> None:
    for key in ("target", "arch", "version", "commit", "llama_bench", "compiler", "root"):
        typer.echo(f"{key + ':':18}{info_dict[key]}")
    typer.echo(f"{'build_flags:':18}{' '.join(info_dict['build_flags'])}")  # type: ignore[arg-type]


def _check_target(target: str) -> None:
    from star.runtime.cross import TARGETS

    if target != HOST and target not in TARGETS:
        typer.echo(f"error: --target {target!r}: one of {HOST}, {', '.join(TARGETS)}", err=True)
        raise typer.Exit(2)


@runtime_app.command("build")
def build(
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="parallel compile jobs")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="stream cmake output")] = False,
    runtime: RuntimeOption = RuntimeKind.llama_cpp,
    target: TargetOpt = HOST,
) -> None:
    """Fetch the pinned llama.cpp source, build it (once), print the binaries and the commit.

    Example: star runtime build --target android-arm64
    """
    if runtime == RuntimeKind.executorch:
        if target != HOST:
            typer.echo("error: --target applies to llama.cpp; the ExecuTorch runner for phones "
                       "is built from ExecuTorch's source tree (README, ExecuTorch)", err=True)
            raise typer.Exit(2)
        _executorch(build=True, as_json=False, verbose=verbose)
        return
    from star.runtime import RuntimeBuildError, build_dir, ensure_runtime, read_marker

    _check_target(target)
    if target != HOST:
        from star.runtime.cross import cross_build_dir, ensure_phone_runtime, read_phone_marker

        if read_phone_marker(target) is None:
            typer.echo(f"cross-building llama-bench for {target} into {cross_build_dir(target)} "
                       "(tens of minutes on 2 cores; log: build.log)", err=True)
        try:
            phone = ensure_phone_runtime(target, jobs=jobs, log=verbose)
        except RuntimeBuildError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        _print_phone(phone.to_dict())
        return

    if read_marker() is None:
        typer.echo(f"building llama.cpp into {build_dir()} (a few minutes; log: build.log)",
                   err=True)
    try:
        info = ensure_runtime(jobs=jobs, log=verbose)
    except RuntimeBuildError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _print_info(info.to_dict())


@runtime_app.command("info")
def info(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    runtime: RuntimeOption = RuntimeKind.llama_cpp,
    target: TargetOpt = HOST,
) -> None:
    """Show the build on this host (commit, flags, binary paths) without building.

    Example: star runtime info --runtime executorch --json
    """
    if runtime == RuntimeKind.executorch:
        if target != HOST:
            typer.echo("error: --target applies to llama.cpp", err=True)
            raise typer.Exit(2)
        _executorch(build=False, as_json=as_json, verbose=False)
        return
    from star.runtime import build_dir, read_marker

    _check_target(target)
    if target != HOST:
        from star.runtime.cross import cross_build_dir, read_phone_marker

        phone = read_phone_marker(target)
        if phone is None:
            typer.echo(f"error: no {target} build ({cross_build_dir(target)}); "
                       f"run `star runtime build --target {target}`", err=True)
            raise typer.Exit(1)
        if as_json:
            typer.echo(json.dumps(phone.to_dict(), indent=2))
        else:
            _print_phone(phone.to_dict())
        return

    found = read_marker()
    if found is None:
        typer.echo(f"error: llama.cpp is not built on this host ({build_dir()}); "
                   "run `star runtime build`", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(found.to_dict(), indent=2))
    else:
        _print_info(found.to_dict())


def _executorch(*, build: bool, as_json: bool, verbose: bool) -> None:
    """Build (or show) star-et-bench, compiled against the installed executorch wheel."""
    from star.runtime import RuntimeBuildError
    from star.runtime.executorch import ensure_executorch_runner, read_runner_marker

    try:
        found = ensure_executorch_runner(log=verbose) if build else read_runner_marker()
    except RuntimeBuildError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if found is None:
        typer.echo("error: the ExecuTorch runner is not built on this host; run "
                   "`star runtime build --runtime executorch`", err=True)
        raise typer.Exit(1)
    data = found.to_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for key in ("runtime_version", "runner", "package_dir", "compiler", "build_seconds", "root"):
        typer.echo(f"{key + ':':18}{data[key]}")
    typer.echo(f"{'compile_flags:':18}{' '.join(data['compile_flags'])}")

"""``star bench MODEL.gguf``: TTFT, decode latency and peak RSS per context on this machine.
(``MODEL.pte``: the same figures from the ExecuTorch runner, star.cli.bench_pte.)

Exit codes: 0 every context measured (or out of memory, which is a result); 1 a context failed
otherwise, or the runtime could not be built; 2 invalid input (one line on stderr, no traceback);
143 stopped by SIGTERM or SIGINT (the llama-bench it started is stopped with it).

Contexts are measured by ``device_agents.measure_policy``, the agents' rule: larger contexts are
skipped after an out-of-memory or a timeout; ``--max-tries`` re-measures a noisy figure and keeps
the least noisy; ``--quiet-wait`` first waits (up to that many seconds) for a quiet machine.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Annotated

import typer

from device_agents.llamacpp.commands import KV_CACHE_TYPES, BenchInputError, BenchSettings


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def parse_contexts(text: str) -> list[int]:
    """"4096,32768" or "4k,32k" (k = 1024) -> [4096, 32768]."""
    contexts = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*([kK]?)\s*", part)
        if not match:
            raise BenchInputError(f"--contexts: {part.strip()!r} is not a positive integer")
        value = int(match.group(1)) * (1024 if match.group(2) else 1)
        if value < 1:
            raise BenchInputError(f"--contexts: {part.strip()!r} is not a positive integer")
        contexts.append(value)
    return contexts


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def bench(
    model: Annotated[Path, typer.Argument(help="GGUF model file (or an ExecuTorch .pte)")],
    contexts: Annotated[str, typer.Option(help="context lengths, comma-separated")] = "4096,32768",
    repeats: Annotated[
        int, typer.Option("--repetitions", "--repeats", "-r",
                          help="timed repetitions per figure")
    ] = 5,
    threads: Annotated[int | None, typer.Option(help="threads (default: usable cores)")] = None,
    n_gen: Annotated[int, typer.Option("--n-gen", help="tokens generated for decode")] = 32,
    flash_attn: Annotated[str, typer.Option("--flash-attn", help="on | off")] = "off",
    cache_type: Annotated[str, typer.Option("--cache-type", help="KV cache type, K and V")] = "f16",
    cpu_mask: Annotated[str | None, typer.Option("--cpu-mask", help="llama-bench -C mask")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds per llama-bench process")] = None,
    llama_bench: Annotated[
        Path | None, typer.Option("--llama-bench", help="use this binary, not the pinned build")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the BenchReport JSON")] = False,
    runner: Annotated[
        Path | None, typer.Option(help=".pte: use this star-et-bench, not the cached build")
    ] = None,
    profile_dir: Annotated[
        Path | None, typer.Option(help=".pte: keep an ETDump profile per run in this folder")
    ] = None,
    max_tries: Annotated[
        int, typer.Option("--max-tries", min=1, max=20,
                          help="measure a noisy context up to N times; keep the least noisy")
    ] = 1,
    noisy_cv: Annotated[
        float, typer.Option("--noisy-cv", min=0, help="stddev/median above this is noisy")
    ] = 0.10,
    quiet_wait: Annotated[
        float, typer.Option("--quiet-wait", min=0,
                            help="seconds to wait for a quiet machine before each try (0: none)")
    ] = 0.0,
) -> None:
    """Measure a GGUF with stock llama-bench (a .pte with the ExecuTorch runner): TTFT,
    decode ms/token and peak RSS per context.

    Example: star bench model.gguf --contexts 4k,32k --flash-attn on --repetitions 3
    """
    if model.suffix == ".pte":
        from star.cli.bench_pte import bench_pte

        if flash_attn != "off" or cache_type != "f16" or llama_bench is not None:
            raise _fail("--flash-attn, --cache-type and --llama-bench are llama.cpp settings; "
                        "a .pte has a float32 KV cache and no flash attention")
        try:
            wanted = parse_contexts(contexts)
        except BenchInputError as exc:
            raise _fail(str(exc)) from None
        bench_pte(model, contexts=wanted, repeats=repeats, threads=threads or _default_threads(),
                  n_gen=n_gen, cpu_mask=cpu_mask, timeout=timeout, runner=runner,
                  profile_dir=profile_dir, as_json=as_json)
        return
    if runner is not None or profile_dir is not None:
        raise _fail("--runner and --profile-dir apply to a .pte")
    from device_agents.llamacpp.commands import validate_model
    from device_agents.llamacpp.flags import UnsupportedFlagError
    from device_agents.llamacpp.local import run_local_bench

    try:
        if flash_attn not in ("on", "off"):
            raise BenchInputError(f"--flash-attn must be on or off, got {flash_attn!r}")
        if cache_type not in KV_CACHE_TYPES:
            raise BenchInputError(
                f"--cache-type {cache_type!r} is not one of {', '.join(KV_CACHE_TYPES)}"
            )
        if cpu_mask is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", cpu_mask):
            raise BenchInputError(f"--cpu-mask {cpu_mask!r} is not a hex mask")
        settings = BenchSettings(
            threads=threads or _default_threads(), n_gen=n_gen, repetitions=repeats,
            flash_attn=flash_attn == "on", cache_type_k=cache_type, cache_type_v=cache_type,
            cpu_mask=cpu_mask,
        )
        wanted = parse_contexts(contexts)
        validate_model(model, wanted, n_gen=n_gen)  # before any (possibly slow) build
    except BenchInputError as exc:
        raise _fail(str(exc)) from None

    build_flags: list[str] = []
    commit: str | None = None
    if llama_bench is None:
        from star.runtime import RuntimeBuildError, ensure_runtime

        try:
            runtime = ensure_runtime()
        except RuntimeBuildError as exc:
            raise _fail(str(exc), 1) from None
        llama_bench, build_flags, commit = runtime.llama_bench, list(runtime.build_flags), \
            runtime.commit
    elif not llama_bench.is_file():
        raise _fail(f"llama-bench not found: {llama_bench}")

    from device_agents.protocol import RemeasurePolicy
    from device_agents.quiet import QuietGate, QuietThresholds

    gate = QuietGate(QuietThresholds(timeout_s=quiet_wait)) if quiet_wait > 0 else None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    from star.cli.errors import progress

    try:
        with progress(f"llama-bench: {model.name} at {', '.join(map(str, wanted))} tokens, "
                      f"{repeats} repetitions (a 32K prefill takes minutes on a laptop)"):
            report = run_local_bench(
                model, wanted, settings, llama_bench, build_flags=build_flags, commit=commit,
                timeout_s=timeout, quiet=gate,
                remeasure=RemeasurePolicy(noisy_cv=noisy_cv, max_tries=max_tries))
    except (BenchInputError, UnsupportedFlagError) as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:  # the benchmark process group is already killed (run_process)
        typer.echo("stopped", err=True)
        raise typer.Exit(143) from None
    finally:
        signal.signal(signal.SIGTERM, previous)

    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        _print_table(model, report)
    if any(c.error is not None for c in report.contexts):
        raise typer.Exit(1)


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM as SIGINT: unwind, so the running llama-bench is stopped before we exit."""
    raise KeyboardInterrupt


def _print_table(model: Path, report: object) -> None:
    from rich.console import Console
    from rich.table import Table

    from device_agents.schemas import BenchReport, Stat

    assert isinstance(report, BenchReport)
    rt = report.runtime

    def fmt(stat: Stat | None) -> str:
        return "-" if stat is None else f"{stat.median:,.2f} ± {stat.stddev:,.2f}"

    table = Table(title=f"{model.name}  ({report.model_bytes / 2**20:,.1f} MiB)")
    for column in ("context", "TTFT ms", "prefill tok/s", "decode ms/tok", "decode tok/s",
                   "peak RSS MiB", "status"):
        table.add_column(column, justify="right" if column != "status" else "left")
    for c in report.contexts:
        prefill = f"{c.context / c.ttft_ms.median * 1000:,.0f}" if c.ttft_ms else "-"
        decode = (f"{1000 / c.decode_ms_per_token.median:,.1f}"
                  if c.decode_ms_per_token and c.decode_ms_per_token.median > 0 else "-")
        rss = f"{c.peak_rss_bytes / 2**20:,.1f}" if c.peak_rss_bytes else "-"
        status = "OOM" if c.oom else (c.error or "ok")
        if c.tries > 1:
            status += f" ({c.tries} tries)"
        table.add_row(str(c.context), fmt(c.ttft_ms), prefill, fmt(c.decode_ms_per_token),
                      decode, rss, status)
    console = Console()
    console.print(table)
    if rt.runtime != "llama.cpp":
        console.print(
            f"{rt.runtime} {rt.runtime_version} | delegate {rt.delegate} | threads {rt.threads}"
            f"{f' mask {rt.cpu_mask}' if rt.cpu_mask else ''} | KV {rt.cache_type_k} | "
            f"n_gen {rt.n_gen} | reps {rt.repetitions} | {rt.cpu_model}"
        )
        return
    console.print(
        f"llama.cpp {rt.llama_cpp_commit} | threads {rt.threads}"
        f"{f' mask {rt.cpu_mask}' if rt.cpu_mask else ''} | flash-attn "
        f"{'on' if rt.flash_attn else 'off'} | KV {rt.cache_type_k}/{rt.cache_type_v} | "
        f"mmap {'on' if rt.mmap else 'off'} | n_gen {rt.n_gen} | reps {rt.repetitions} | "
        f"{rt.cpu_model}"
    )

"""Measuring a GGUF with stock llama-bench: shared by ``star bench`` and the device agents.

Stdlib + pydantic only (no torch, no database). The pure parts (flag detection, command
construction, JSON parsing, result assembly) are separate from the local process runner, so the
Android agent builds the same commands and parses the same output while running over adb:

    flags = parse_help(help_text)                        # flags.py
    ttft_cmd, decode_cmd = build_commands(flags, model, context, settings)   # commands.py
    measurement, _ = assemble_context(context, ttft_outcome, decode_outcome)  # results.py
    report = run_local_bench(model, contexts, settings, llama_bench_path)     # local.py
"""

from __future__ import annotations

from device_agents.llamacpp.commands import (
    BenchInputError,
    BenchSettings,
    build_commands,
    validate_model,
)
from device_agents.llamacpp.flags import LlamaBenchFlags, UnsupportedFlagError, parse_help
from device_agents.llamacpp.gguf_header import GGUFError, GGUFHeader, read_gguf_header
from device_agents.llamacpp.local import detect_flags, run_local_bench, run_process
from device_agents.llamacpp.results import (
    BenchParseError,
    LlamaBenchResult,
    RunOutcome,
    assemble_context,
    classify_failure,
    parse_llama_bench_json,
    stat_ms,
)

__all__ = [
    "BenchInputError",
    "BenchParseError",
    "BenchSettings",
    "GGUFError",
    "GGUFHeader",
    "LlamaBenchFlags",
    "LlamaBenchResult",
    "RunOutcome",
    "UnsupportedFlagError",
    "assemble_context",
    "build_commands",
    "classify_failure",
    "detect_flags",
    "parse_help",
    "parse_llama_bench_json",
    "read_gguf_header",
    "run_local_bench",
    "run_process",
    "stat_ms",
    "validate_model",
]

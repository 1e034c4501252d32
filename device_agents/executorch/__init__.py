"""Measuring an ExecuTorch .pte with ``star-et-bench``: the counterpart of ``llamacpp``.

Stdlib + pydantic only (no torch, no executorch Python package): an agent host needs the runner
binary and the wheel's shared libraries, nothing else. Same shape as the llama.cpp path:

    info = read_pte_info(runner, model)                                     # local.py
    ttft_cmd, decode_cmd = build_commands(runner, model, context, settings)  # commands.py
    measurement = assemble_context(context, ttft_outcome, decode_outcome)   # results.py
    report = run_pte_bench(model, contexts, settings, runner)               # local.py

Peak RSS is the prefill (TTFT) process's high-water mark from wait4, measured from outside
through the llama.cpp path's launcher (``device_agents.llamacpp.local.run_process``).
"""

from __future__ import annotations

from device_agents.executorch.commands import PteBenchSettings, build_commands, profile_paths
from device_agents.executorch.local import read_pte_info, run_pte_bench, validate_pte
from device_agents.executorch.results import (
    PteInfo,
    RunnerParseError,
    assemble_context,
    parse_runner_json,
)

__all__ = [
    "PteBenchSettings",
    "PteInfo",
    "RunnerParseError",
    "assemble_context",
    "build_commands",
    "parse_runner_json",
    "profile_paths",
    "read_pte_info",
    "run_pte_bench",
    "validate_pte",
]

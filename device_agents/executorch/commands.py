"""What is run to measure a .pte at one context: pure command construction.

Two ``star-et-bench`` processes per context C, as for llama-bench:

- TTFT: ``ttft --context C``: the runner loads the program, runs ``warmup`` untimed prefills of
  C tokens, then times ``repetitions`` prefills from position 0 (C // chunk prefill calls and
  C % chunk decode calls each, ending with the last token's logits = the first generated
  token's distribution). Peak RSS is this process's high-water mark.
- Decode: ``decode --context C --n-gen M``: one untimed prefill of C tokens, a snapshot of the
  state arena, then per repetition: restore the snapshot and time M decode calls (ms/token =
  sample / M). The snapshot is an extra copy of the state, so this process's RSS is not used.

Every setting that changes the figures is on the command line: threads, repetitions, warm-up
runs, the CPU mask. Token ids are synthetic and deterministic (figures do not depend on them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from device_agents.llamacpp.commands import BenchInputError


@dataclass(frozen=True)
class PteBenchSettings:
    threads: int
    n_gen: int = 32  # tokens generated for the decode figure
    repetitions: int = 5
    warmup: int = 1  # untimed runs before the timed ones (llama-bench also warms up once)
    cpu_mask: str | None = None  # hex mask: pin the runner and its pool threads

    def __post_init__(self) -> None:
        if self.threads < 1 or self.n_gen < 1 or self.repetitions < 1 or self.warmup < 0:
            raise BenchInputError("threads, n_gen and repetitions must be >= 1, warmup >= 0")


def profile_paths(profile_dir: str | Path, model: str | Path, context: int) -> tuple[Path, Path]:
    """Where the ETDump profiles of one context are written: (prefill run, decode run)."""
    stem = Path(model).stem
    base = Path(profile_dir)
    return base / f"{stem}-c{context}-ttft.etdp", base / f"{stem}-c{context}-decode.etdp"


def build_commands(
    runner: str | Path,
    model: str | Path,
    context: int,
    settings: PteBenchSettings,
    *,
    profile_dir: str | Path | None = None,
) -> list[list[str]]:
    """The [TTFT, decode] command lines for one context (paths as the host sees them)."""
    if context < 1:
        raise BenchInputError(f"context must be positive, got {context}")
    common = [
        "--context", str(context),
        "--reps", str(settings.repetitions),
        "--warmup", str(settings.warmup),
        "--threads", str(settings.threads),
        *(["--cpu-mask", settings.cpu_mask] if settings.cpu_mask else []),
    ]  # fmt: skip
    ttft = [str(runner), str(model), "ttft", *common]
    decode = [str(runner), str(model), "decode", *common, "--n-gen", str(settings.n_gen)]
    if profile_dir is not None:
        ttft_profile, decode_profile = profile_paths(profile_dir, model, context)
        ttft += ["--etdump", str(ttft_profile)]
        decode += ["--etdump", str(decode_profile)]
    return [ttft, decode]

"""What is run to measure one model at one context: pure command construction and input checks.

Two llama-bench invocations per context C, each its own process:

- TTFT: ``-p C -n 0``. llama-bench times the prefill of C tokens, which ends with the logits of
  the last position, i.e. the first generated token's distribution. Sampling it costs
  microseconds and is not added; model load and tokenisation are excluded (the model is loaded
  once, an untimed warm-up prefill runs, then the timed repetitions; the prompt is synthetic
  token ids). Peak RSS is this process's high-water mark (see results.assemble_context).
- Decode: ``-p 0 -n M -d C``. Each repetition restores (or, the first time, computes untimed) a
  KV cache holding C tokens and then times M single-token decode steps; ms/token = sample / M.

Every setting that changes the figures is pinned on the command line, never left to the build's
default: threads, flash attention, K and V cache types, no GPU offload (``-ngl 0``), the model
load mode (mmap off: the weights are read into anonymous memory, so RSS counts all of them
whatever the page cache holds), the repetitions and, when given, the CPU mask. Batch sizes stay
at llama-bench's defaults (``-b 2048 -ub 512``). ``-v`` is added where the binary has it, so an
allocation failure is named on stderr (then classified as out of memory, see results.py).
The Android agent reuses this module unchanged and runs the commands over adb.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from device_agents.llamacpp.flags import LlamaBenchFlags
from device_agents.llamacpp.gguf_header import GGUFError, GGUFHeader, read_gguf_header

KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


class BenchInputError(ValueError):
    """Invalid benchmark input (missing model, not a GGUF, context too long): one-line message."""


@dataclass(frozen=True)
class BenchSettings:
    threads: int
    n_gen: int = 32  # tokens generated for the decode figure
    repetitions: int = 5
    flash_attn: bool = False  # pinned: "auto" resolves ON on CPU and slows decode at depth
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    cpu_mask: str | None = None  # llama-bench -C hex mask (pin threads to the big cores)
    mmap: bool = False
    # From this context on, the TTFT run skips llama-bench's untimed warm-up prefill: a prompt
    # of hundreds of micro-batches warms caches and pages itself, and the warm-up would cost a
    # whole extra prefill (minutes at 32K on a phone). None: always warm up.
    warmup_below: int | None = 16384

    def __post_init__(self) -> None:
        if self.threads < 1 or self.n_gen < 1 or self.repetitions < 1:
            raise BenchInputError("threads, n_gen and repetitions must be at least 1")
        for name in ("cache_type_k", "cache_type_v"):
            if getattr(self, name) not in KV_CACHE_TYPES:
                raise BenchInputError(
                    f"{name} {getattr(self, name)!r} is not one of {', '.join(KV_CACHE_TYPES)}"
                )


def prefills(context: int, repetitions: int, warmup_below: int | None = 16384) -> int:
    """Full prefills of ``context`` tokens the two runs of one context cost: the TTFT run's
    repetitions (plus its warm-up below ``warmup_below``) and the decode run's depth."""
    warm = warmup_below is None or context < warmup_below
    return repetitions + (1 if warm else 0) + 1


def build_commands(
    flags: LlamaBenchFlags,
    model_path: str,
    context: int,
    settings: BenchSettings,
    *,
    llama_bench: str = "llama-bench",
) -> list[list[str]]:
    """The [TTFT, decode] llama-bench command lines for one context (paths as the host sees them).

    Raises UnsupportedFlagError when the binary cannot pin a required setting.
    """
    if context < 1:
        raise BenchInputError(f"context must be positive, got {context}")
    common = [
        llama_bench,
        "-m", model_path,
        "-o", "json",
        "-r", str(settings.repetitions),
        "-t", str(settings.threads),
        *flags.flash_attn_args(settings.flash_attn),
        *flags.cache_type_args(settings.cache_type_k, settings.cache_type_v),
        *flags.mmap_args(settings.mmap),
        *flags.cpu_mask_args(settings.cpu_mask),
        # CPU only: a build with a GPU backend would otherwise offload every layer (-ngl -1)
        *([flags.n_gpu_layers, "0"] if flags.n_gpu_layers else []),
        # llama.cpp's own log (load-time only, ~25 KB): without it a failed allocation shows
        # only as "failed to create context", which other mistakes print too.
        *([flags.verbose] if flags.verbose else []),
    ]
    cold = settings.warmup_below is not None and context >= settings.warmup_below
    ttft = [*common, "-p", str(context), "-n", "0",
            *(["--no-warmup"] if cold and flags.no_warmup else [])]
    decode = [*common, "-p", "0", "-n", str(settings.n_gen), *flags.depth_args(context)]
    return [ttft, decode]


def validate_model(path: str | Path, contexts: list[int], *, n_gen: int = 0) -> GGUFHeader:
    """Check the model file and the requested contexts before any process is started.

    A context C needs C + n_gen positions (the decode run generates n_gen tokens after C).
    """
    path = check_model_file(path)
    try:
        header = read_gguf_header(path)
    except GGUFError as exc:
        raise BenchInputError(str(exc)) from None
    except OSError as exc:
        raise BenchInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    check_contexts(contexts)
    limit = header.context_length
    if limit is not None:
        too_long = [c for c in contexts if c + n_gen > limit]
        if too_long:
            raise BenchInputError(
                f"context {too_long[0]}{f' + {n_gen} generated' if n_gen else ''} exceeds the "
                f"model's context_length {limit} ({header.architecture}.context_length in {path})"
            )
    return header


def check_model_file(path: str | Path) -> Path:
    """The model file to measure, as a Path, if it exists and is a file (any runtime)."""
    path = Path(path)
    if not path.exists():
        raise BenchInputError(f"model file not found: {path}")
    if not path.is_file():
        raise BenchInputError(f"model path is not a file: {path}")
    return path


def check_contexts(contexts: Sequence[int]) -> None:
    """Contexts to measure: at least one, each positive, each once (any runtime)."""
    if not contexts:
        raise BenchInputError("no contexts given")
    bad = [c for c in contexts if c < 1]
    if bad:
        raise BenchInputError(f"contexts must be positive, got {bad[0]}")
    if len(set(contexts)) != len(contexts):
        raise BenchInputError("each context may appear only once")

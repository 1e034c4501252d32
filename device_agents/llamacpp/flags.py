"""Which spelling of each llama-bench flag a given binary understands, read from its ``--help``.

llama-bench's flags changed between builds: flash attention is ``-fa 0|1`` in older builds and
``-fa on|off|auto`` in newer ones (where the default "auto" resolves ON on CPU); model loading is
``-mmp 0|1`` in older builds and ``-lm/--load-mode none|mmap|...`` in newer ones. A phone may
carry a different build than the lab host, so the spelling is detected per binary, never assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class UnsupportedFlagError(ValueError):
    """The binary cannot pin a setting the measurement requires (the message names it)."""


@dataclass(frozen=True)
class LlamaBenchFlags:
    flash_attn: str | None  # "-fa"
    flash_attn_onoff: bool  # True: takes on|off|auto; False: takes 0|1
    load_mode: str | None  # "-lm" (takes none|mmap|...), preferred over mmap
    mmap: str | None  # "-mmp" (takes 0|1), older builds
    cache_type_k: str | None  # "-ctk"
    cache_type_v: str | None  # "-ctv"
    cpu_mask: str | None  # "-C"
    depth: str | None  # "-d"; without it decode latency at depth cannot be measured
    no_warmup: bool
    verbose: str | None = None  # "-v": llama.cpp's logs on stderr (names allocation failures)
    n_gpu_layers: str | None = None  # "-ngl": pinned to 0, the figures are the CPU's

    def flash_attn_args(self, enabled: bool) -> list[str]:
        if self.flash_attn is None:
            raise UnsupportedFlagError("this llama-bench has no flash-attention flag (-fa)")
        if self.flash_attn_onoff:
            return [self.flash_attn, "on" if enabled else "off"]
        return [self.flash_attn, "1" if enabled else "0"]

    def mmap_args(self, enabled: bool) -> list[str]:
        if self.load_mode is not None:
            return [self.load_mode, "mmap" if enabled else "none"]
        if self.mmap is not None:
            return [self.mmap, "1" if enabled else "0"]
        raise UnsupportedFlagError("this llama-bench can pin neither --load-mode nor --mmap")

    def cache_type_args(self, type_k: str, type_v: str) -> list[str]:
        if self.cache_type_k is None or self.cache_type_v is None:
            raise UnsupportedFlagError("this llama-bench cannot pin the KV cache type (-ctk/-ctv)")
        return [self.cache_type_k, type_k, self.cache_type_v, type_v]

    def cpu_mask_args(self, mask: str | None) -> list[str]:
        if mask is None:
            return []
        if self.cpu_mask is None:
            raise UnsupportedFlagError("this llama-bench has no CPU mask flag (-C/--cpu-mask)")
        return [self.cpu_mask, mask]

    def depth_args(self, depth: int) -> list[str]:
        if self.depth is None:
            raise UnsupportedFlagError("this llama-bench cannot measure decode at depth (-d)")
        return [self.depth, str(depth)]


def _options(help_text: str) -> dict[str, tuple[str, str]]:
    """Map every flag name to (the flag to pass, its argument placeholder), from option lines
    such as ``  -fa, --flash-attn <on|off|auto>   (default: auto)``."""
    table: dict[str, tuple[str, str]] = {}
    for line in help_text.splitlines():
        if not line.lstrip().startswith("-"):
            continue
        head = re.split(r"\s{2,}|\s\(", line.strip(), maxsplit=1)[0]
        names = re.findall(r"(?:^|[\s,])(--?[A-Za-z][\w+-]*)", head.split("<", 1)[0])
        arg = re.search(r"<[^>]*>", head)
        for name in names:
            table.setdefault(name, (names[0], arg.group(0) if arg else ""))
    return table


def _option(table: dict[str, tuple[str, str]], *names: str) -> tuple[str | None, str]:
    for name in names:
        if name in table:
            return table[name]
    return None, ""


def parse_help(help_text: str) -> LlamaBenchFlags:
    """Detect the flag spellings from the text printed by ``llama-bench --help``."""
    table = _options(help_text)
    if "-m" not in table and "--model" not in table:
        raise ValueError("not llama-bench --help output (no -m/--model option)")
    fa, fa_arg = _option(table, "-fa", "--flash-attn")
    load_mode, _ = _option(table, "-lm", "--load-mode")
    mmap, _ = _option(table, "-mmp", "--mmap")
    ctk, _ = _option(table, "-ctk", "--cache-type-k")
    ctv, _ = _option(table, "-ctv", "--cache-type-v")
    cpu_mask, _ = _option(table, "-C", "--cpu-mask")
    depth, _ = _option(table, "-d", "--n-depth")
    no_warmup, _ = _option(table, "--no-warmup")
    verbose, _ = _option(table, "-v", "--verbose")
    ngl, _ = _option(table, "-ngl", "--n-gpu-layers")
    return LlamaBenchFlags(
        flash_attn=fa,
        flash_attn_onoff="on" in re.split(r"[<>|\s]+", fa_arg),
        load_mode=load_mode,
        mmap=mmap,
        cache_type_k=ctk,
        cache_type_v=ctv,
        cpu_mask=cpu_mask,
        depth=depth,
        no_warmup=no_warmup is not None,
        verbose=verbose,
        n_gpu_layers=ngl,
    )

"""Numbers as a reader wants them: units, three significant figures, spreads, ratios, times."""

from __future__ import annotations

import math

from star.report.model import Figure

UNITS = {"ttft_ms": "ms", "decode_ms": "ms/token", "peak_rss_mb": "MiB", "params": "M",
         "active_params": "M", "kv_bytes_per_token": "B", "quality": ""}


def num(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "–"
    if math.isinf(v):
        return "OOM"
    if v == 0:
        return "0"
    if abs(v) >= 10**digits:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def figure(f: Figure, metric: str = "", *, unit: bool = False) -> str:
    """``12.3 ± 0.4 ms`` (spread shown when recorded)."""
    if f.value is None:
        return "–"
    text = num(f.value)
    if f.spread and not math.isinf(f.value):
        text += f" ± {num(f.spread, 2)}"
    if unit and UNITS.get(metric) and not math.isinf(f.value):
        text += f" {UNITS[metric]}"
    return text


def ratio(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}×"


def size(n: float | None) -> str:
    """Bytes with a binary unit: 1536 -> ``1.5 KiB``."""
    if n is None:
        return "–"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{num(n / scale)} {unit}"
    return f"{n:.0f} B"


def count(n: int | None) -> str:
    """Parameters: ``354.5 M``, ``1.17 B``, ``969 K``."""
    if n is None:
        return "–"
    if n >= 1e9:
        return f"{n / 1e9:.3g} B"
    if n >= 1e6:
        return f"{n / 1e6:.4g} M"
    if n >= 1e3:
        return f"{n / 1e3:.3g} K"
    return str(n)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def setting(fa: bool | None) -> str:
    return "–" if fa is None else ("FA on" if fa else "FA off")

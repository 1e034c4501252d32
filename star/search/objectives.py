"""Objectives and budgets: names, parsing, and their values from stored rows.

An objective or budget names a metric, optionally at a context and on a device class::

    quality                       proxy loss (lower is better; see star.proxy)
    params | active_params        analytic parameter counts (millions)
    kv_bytes_per_token            analytic KV growth per token
    ttft_ms@4096/android          measured TTFT at 4096 tokens on the android class
    decode_ms@32768/x86           measured decode ms/token at depth 32768 on x86 devices
    peak_rss_mb@32768/android     measured peak RSS (MiB) at 32768 tokens

All are minimised. A device class is a device kind (``x86``, ``android``) optionally narrowed by
tags (``android:s24``). When several devices of a class measured a candidate, the *worst* value
counts: a budget must hold on every device of the class.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ANALYTIC = {"params", "active_params", "kv_bytes_per_token"}
MEASURED = {"ttft_ms", "decode_ms", "peak_rss_mb"}
PROXY = {"quality"}
METRICS = ANALYTIC | MEASURED | PROXY

_NAME = re.compile(r"^(?P<metric>[a-z_]+)(?:@(?P<context>\d+))?(?:/(?P<device>[a-z0-9_:.-]+))?$")


@dataclass(frozen=True)
class MetricKey:
    metric: str
    context: int | None = None
    device_class: str | None = None

    @property
    def name(self) -> str:
        out = self.metric
        if self.context is not None:
            out += f"@{self.context}"
        if self.device_class is not None:
            out += f"/{self.device_class}"
        return out

    @property
    def kind(self) -> str:
        return self.device_class.split(":")[0] if self.device_class else ""

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.device_class.split(":")[1:]) if self.device_class else ()


def parse_metric(name: str) -> MetricKey:
    """Parse ``metric[@context][/class]``; raises ValueError naming what is wrong."""
    m = _NAME.match(name.strip())
    if not m:
        raise ValueError(f"{name!r} is not metric[@context][/device_class]")
    metric, ctx, device = m.group("metric"), m.group("context"), m.group("device")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(METRICS)}")
    if metric in MEASURED and (ctx is None or device is None):
        raise ValueError(f"{name!r}: a measured metric needs @context and /device_class")
    if metric not in MEASURED and (ctx is not None or device is not None):
        raise ValueError(f"{name!r}: {metric} takes no context or device class")
    if device is not None and device.split(":")[0] not in ("x86", "android"):
        raise ValueError(f"{name!r}: device class must start with x86 or android")
    return MetricKey(metric, int(ctx) if ctx else None, device)


@dataclass(frozen=True)
class DeviceMeasurement:
    """One stored measurement with the device that took it (kind and tags)."""

    device_kind: str
    device_tags: tuple[str, ...]
    context: int
    ttft_ms: float | None
    decode_ms: float | None
    peak_rss_bytes: int | None
    oom: bool
    error: str | None


def value(
    key: MetricKey,
    *,
    analytic: Mapping[str, Any] | None,
    proxy: Mapping[str, Any] | None,
    measurements: Iterable[DeviceMeasurement],
) -> tuple[float | None, str]:
    """The metric's value for one candidate, or (None, reason) when it is missing/failed.

    An OOM at the context counts as infinitely large memory/latency (infeasible, not missing).
    """
    if key.metric in PROXY:
        if not proxy or proxy.get("error") or proxy.get("quality") is None:
            return None, f"no proxy quality ({(proxy or {}).get('error', 'not trained')})"
        return float(proxy["quality"]), ""
    if key.metric in ANALYTIC:
        if not analytic:
            return None, "no analytic costs"
        raw = analytic[key.metric]
        return (float(raw) / 1e6 if key.metric.endswith("params") else float(raw)), ""
    rows = [
        m
        for m in measurements
        if m.device_kind == key.kind
        and set(key.tags) <= set(m.device_tags)
        and m.context == key.context
    ]
    if not rows:
        return None, f"no measurement for {key.name}"
    worst = -math.inf
    for m in rows:
        if m.oom:
            return math.inf, f"OOM at {key.context} tokens"
        if m.error:
            return None, f"measurement failed: {m.error}"
        figure = {
            "ttft_ms": m.ttft_ms,
            "decode_ms": m.decode_ms,
            "peak_rss_mb": None if m.peak_rss_bytes is None else m.peak_rss_bytes / 2**20,
        }[key.metric]
        if figure is None:
            return None, f"{key.name} missing in the measurement"
        worst = max(worst, figure)
    return worst, ""

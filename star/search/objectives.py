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
counts: a budget must hold on every device of the class. When one device measured a candidate
under several llama.cpp settings (flash attention off and on), the *best* setting counts, per
objective: a deployment chooses its setting, and the study shows each architecture at its better
one (``MetricValue.flash_attn`` says which).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from star.db.device_class import DeviceClass

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
        return DeviceClass.parse(self.device_class).kind if self.device_class else ""

    @property
    def tags(self) -> tuple[str, ...]:
        return DeviceClass.parse(self.device_class).tags if self.device_class else ()

    def serves(self, m: DeviceMeasurement) -> bool:
        """Does measurement ``m`` (its device) count for this metric's device class?"""
        return self.device_class is not None and DeviceClass.parse(self.device_class).serves(
            m.device_kind, m.device_tags)


@dataclass(frozen=True)
class Bound:
    """A budget: ``value <= limit`` (an upper bound, the usual) or ``value >= limit``
    (``lower``: e.g. a minimum parameter count that keeps a study size-matched). Its pymoo
    constraint is the violation normalised by the limit (``violation``), so budgets in
    different units weigh alike; feasible iff it is <= 0."""

    key: MetricKey
    limit: float
    lower: bool = False

    @classmethod
    def of(cls, item: Bound | tuple[MetricKey, float]) -> Bound:
        """A ``Bound``, or an upper bound from a ``(key, limit)`` pair."""
        return item if isinstance(item, Bound) else cls(item[0], float(item[1]))

    @property
    def name(self) -> str:
        return self.key.name

    def violation(self, value: float) -> float:
        diff = self.limit - value if self.lower else value - self.limit
        return diff / abs(self.limit) if self.limit != 0 else diff

    def value_of(self, g: float) -> float:
        """The metric value behind a constraint value (the inverse of ``violation``)."""
        diff = g * abs(self.limit) if self.limit != 0 else g
        return self.limit - diff if self.lower else self.limit + diff

    def broken(self, value: float) -> str:
        """Why ``value`` breaks this budget: ``params = 12.3 < minimum 15``."""
        sign, what = ("<", "minimum") if self.lower else (">", "budget")
        return f"{self.name} = {value:g} {sign} {what} {self.limit:g}"

    def text(self) -> str:
        return f"{self.name} {'>=' if self.lower else '<='} {self.limit:g}"


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
    if device is not None:
        try:
            DeviceClass.parse(device)
        except ValueError as exc:
            raise ValueError(f"{name!r}: {exc}") from None
    return MetricKey(metric, int(ctx) if ctx else None, device)


# What each metric is, for every display: label, unit, direction. All are minimised.
_DESCRIPTION: dict[str, tuple[str, str]] = {
    "quality": ("proxy loss", ""),
    "params": ("params", "M"),
    "active_params": ("active params", "M"),
    "kv_bytes_per_token": ("KV bytes/token", "B"),
    "ttft_ms": ("TTFT", "ms"),
    "decode_ms": ("decode", "ms/token"),
    "peak_rss_mb": ("peak RSS", "MiB"),
}


def short_context(tokens: int) -> str:
    """4096 -> "4K", 32768 -> "32K", 2000 -> "2000"."""
    return f"{tokens // 1024}K" if tokens % 1024 == 0 and tokens >= 1024 else str(tokens)


def describe(key: MetricKey | str, *, with_device: bool = True) -> str:
    """A metric's human name with unit and direction: ``decode ms/token @32K ↓ (x86)``."""
    key = parse_metric(key) if isinstance(key, str) else key
    label, unit = _DESCRIPTION[key.metric]
    out = f"{label} {unit}".strip()
    if key.context is not None:
        out += f" @{short_context(key.context)}"
    out += " ↓"
    if with_device and key.device_class:
        out += f" ({key.device_class})"
    return out


@dataclass(frozen=True)
class DeviceMeasurement:
    """One stored measurement with the device that took it (kind and tags) and how."""

    device_kind: str
    device_tags: tuple[str, ...]
    context: int
    ttft_ms: float | None
    decode_ms: float | None
    peak_rss_bytes: int | None
    oom: bool
    error: str | None
    device_id: int | None = None
    flash_attn: bool | None = None  # as measured (the runtime record); None: unknown (off)
    ttft_stddev_ms: float | None = None
    decode_stddev_ms: float | None = None
    noisy: bool = False
    hot: bool = False
    tries: int = 1
    measurement_id: int | None = None

    def figure(self, metric: str) -> float | None:
        return {
            "ttft_ms": self.ttft_ms,
            "decode_ms": self.decode_ms,
            "peak_rss_mb": None if self.peak_rss_bytes is None else self.peak_rss_bytes / 2**20,
        }[metric]

    def spread(self, metric: str) -> float | None:
        """The figure's standard deviation over repetitions (peak RSS: one process, none)."""
        return {"ttft_ms": self.ttft_stddev_ms, "decode_ms": self.decode_stddev_ms}.get(metric)


@dataclass(frozen=True)
class MetricValue:
    """A measured metric's value with where it came from (for reports and tie checks)."""

    value: float | None  # inf: OOM; None: missing (``reason`` says why)
    reason: str = ""
    flash_attn: bool | None = None  # the setting that gave it (None: unknown or one setting)
    spread: float | None = None  # stddev of the chosen figure
    noisy: bool = False
    tries: int = 1
    measurement_id: int | None = None


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
    if key.metric in MEASURED:
        got = measured_value(key, measurements)
        return got.value, got.reason
    if key.metric in PROXY:
        if not proxy or proxy.get("error") or proxy.get("quality") is None:
            return None, f"no proxy quality ({(proxy or {}).get('error', 'not trained')})"
        return float(proxy["quality"]), ""
    if key.metric in ANALYTIC:
        if not analytic:
            return None, "no analytic costs"
        raw = analytic[key.metric]
        return (float(raw) / 1e6 if key.metric.endswith("params") else float(raw)), ""
    raise AssertionError(key)  # METRICS is ANALYTIC | MEASURED | PROXY


def measured_value(key: MetricKey, measurements: Iterable[DeviceMeasurement]) -> MetricValue:
    """A measured metric: per device the best setting (flash attention off/on), then the worst
    device of the class (see the module doc). An OOM under every setting of a device is inf; a
    setting that failed is skipped when another setting of the device succeeded."""
    rows = [
        m for m in measurements if key.serves(m) and m.context == key.context
    ]
    if not rows:
        return MetricValue(None, f"no measurement for {key.name}")
    by_device: dict[object, list[DeviceMeasurement]] = {}
    for m in rows:
        by_device.setdefault(m.device_id if m.device_id is not None else id(m), []).append(m)
    worst: MetricValue | None = None
    for device_rows in by_device.values():
        best = _best_setting(key, device_rows)
        if best.value is None:
            return best
        if worst is None or (worst.value is not None and best.value > worst.value):
            worst = best
    assert worst is not None
    return worst


def _best_setting(key: MetricKey, rows: list[DeviceMeasurement]) -> MetricValue:
    """One device's rows at one context: the latest row per setting, then the best setting."""
    latest: dict[bool, DeviceMeasurement] = {}
    for m in rows:
        setting = bool(m.flash_attn)
        held = latest.get(setting)
        if held is None or (m.measurement_id or 0) >= (held.measurement_id or 0):
            latest[setting] = m
    ok: list[MetricValue] = []
    failures: list[str] = []
    ooms = 0
    for setting, m in sorted(latest.items(), key=lambda kv: bool(kv[0])):
        fa: bool | None = setting if len(latest) > 1 or m.flash_attn is not None else None
        if m.oom:
            ooms += 1
            continue
        if m.error:
            failures.append(m.error)
            continue
        figure = m.figure(key.metric)
        if figure is None:
            failures.append(f"{key.name} missing in the measurement")
            continue
        ok.append(MetricValue(figure, "", fa, m.spread(key.metric), m.noisy, m.tries,
                              m.measurement_id))
    if ok:
        return min(ok, key=lambda v: v.value if v.value is not None else math.inf)
    if ooms and not failures:
        return MetricValue(math.inf, f"OOM at {key.context} tokens")
    if failures:
        return MetricValue(None, f"measurement failed: {failures[0]}")
    return MetricValue(None, f"no measurement for {key.name}")

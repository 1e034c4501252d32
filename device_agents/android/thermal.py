"""Phone temperatures and the cool-down gate run before every measurement.

Two sources, both read without root:

- ``/sys/class/thermal/thermal_zone*/{type,temp}``: one zone per sensor, usually millidegrees C
  (some zones report whole degrees). Keys are ``thermal_zoneN:<type>``, as on the x86 agent.
  Some vendors' SELinux policy hides these from the shell user: then there are none.
- ``dumpsys thermalservice`` (Android 10+): the platform's thermal status (0 none ... 6 shutdown)
  and the HAL's temperatures (``hal:<name>``), present even where sysfs is hidden.

Values outside -40..150 C are dropped: some "zones" report currents or disconnected sensors.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass

from device_agents.android.errors import RemoteTimeout
from device_agents.android.transport import Transport
from device_agents.schemas import Thermal

log = logging.getLogger(__name__)

ZONES_COMMAND = (
    "for z in /sys/class/thermal/thermal_zone*; do "
    't=$(cat "$z/temp" 2>/dev/null) || continue; '
    'echo "${z##*/}|$(cat "$z/type" 2>/dev/null)|$t"; done'
)
THERMALSERVICE_COMMAND = "dumpsys thermalservice 2>/dev/null"

_PLAUSIBLE_C = (-40.0, 150.0)
_STATUS = re.compile(r"^\s*Thermal Status:\s*(\d+)", re.MULTILINE)
_TEMPERATURE = re.compile(r"Temperature\{mValue=([-0-9.eE]+),\s*mType=(-?\d+),\s*mName=([^,}]+)")


def _celsius(raw: str) -> float | None:
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if abs(value) >= 1000:  # millidegrees, the common case
        value /= 1000.0
    if not _PLAUSIBLE_C[0] <= value <= _PLAUSIBLE_C[1]:
        return None
    return value


def parse_zones(text: str) -> dict[str, float]:
    """Lines ``thermal_zoneN|type|temp`` -> {"thermal_zoneN:type": degrees C}."""
    zones: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 3:
            continue
        zone, kind, raw = parts
        celsius = _celsius(raw)
        if celsius is not None:
            zones[f"{zone}:{kind.strip() or zone}"] = celsius
    return zones


def parse_thermalservice(text: str) -> tuple[int | None, dict[str, float]]:
    """(thermal status, {"hal:<name>": C}) from ``dumpsys thermalservice``.

    Temperatures come from the "Current temperatures from HAL" section when present (what the
    HAL says now), else from "Cached temperatures".
    """
    match = _STATUS.search(text)
    status = int(match.group(1)) if match else None
    section = text
    marker = text.find("Current temperatures from HAL")
    if marker >= 0:
        end = text.find("Current cooling devices", marker)
        section = text[marker : end if end >= 0 else len(text)]
    temperatures: dict[str, float] = {}
    for value, _kind, name in _TEMPERATURE.findall(section):
        celsius = _celsius(value)
        if celsius is not None:
            temperatures[f"hal:{name.strip()}"] = celsius
    return status, temperatures


def read_thermal(transport: Transport, *, timeout_s: float = 15.0) -> Thermal:
    """Both sources in two shell calls; an absent source contributes nothing."""
    zones = parse_zones(transport.shell(ZONES_COMMAND, timeout_s=timeout_s).stdout)
    try:
        dump = transport.shell(THERMALSERVICE_COMMAND, timeout_s=timeout_s)
    except RemoteTimeout:  # a wedged system_server must not fail the measurement
        log.warning("%s: dumpsys thermalservice timed out", transport.serial)
        dump = None
    status, hal = parse_thermalservice(dump.stdout) if dump and dump.ok else (None, {})
    zones.update(hal)
    return Thermal(zones=zones, status=status)


def gate_temperature(thermal: Thermal, zone_pattern: str | None = None) -> float | None:
    """The temperature the cool-down gate compares: the hottest zone matching ``zone_pattern``
    (a regex searched in the zone key; None: every zone). None if no zone matches."""
    pattern = re.compile(zone_pattern) if zone_pattern else None
    values = [v for k, v in thermal.zones.items() if pattern is None or pattern.search(k)]
    return max(values) if values else None


@dataclass(frozen=True)
class CoolDown:
    """How a cool-down wait ended. ``reached`` False: the deadline passed while still hot (the
    measurement goes ahead and its ``thermal_before`` shows it), or no zone could be read."""

    reached: bool
    waited_s: float
    temperature_c: float | None
    thermal: Thermal


def wait_for_cooldown(
    transport: Transport,
    *,
    below_c: float,
    timeout_s: float,
    poll_s: float = 5.0,
    zone_pattern: str | None = None,
    call_timeout_s: float = 15.0,
    stop: threading.Event | None = None,
) -> CoolDown:
    """Poll until the gate temperature is below ``below_c``, for at most ``timeout_s`` (or until
    ``stop`` is set: the agent is stopping)."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        thermal = read_thermal(transport, timeout_s=call_timeout_s)
        temperature = gate_temperature(thermal, zone_pattern)
        waited = time.monotonic() - started
        if temperature is None:
            log.warning("%s: no readable thermal zone; not waiting", transport.serial)
            return CoolDown(False, waited, None, thermal)
        if temperature < below_c:
            return CoolDown(True, waited, temperature, thermal)
        now = time.monotonic()
        if now >= deadline or (stop is not None and stop.is_set()):
            log.warning(
                "%s: still %.1f C (limit %.1f C) after %.0f s; measuring anyway",
                transport.serial, temperature, below_c, waited,
            )
            return CoolDown(False, waited, temperature, thermal)
        (stop or threading.Event()).wait(min(poll_s, deadline - now))

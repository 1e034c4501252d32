"""The one config check that needs the lab database: every measured metric's device class has a
registered, non-retired device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from star.db.device_class import DeviceClass
from star.search.config.errors import SearchConfigError
from star.search.config.schema import SearchConfig
from star.search.objectives import MEASURED


def device_problems(config: SearchConfig, devices: Sequence[Any]) -> list[str]:
    """Measured metrics / device classes with no registered, non-retired device of the class.

    ``devices`` are ``DeviceSnapshot`` s (kind, tags, status)."""
    live = [d for d in devices if getattr(d.status, "value", d.status) != "retired"]

    def covered(device_class: str) -> bool:
        wanted = DeviceClass.parse(device_class)
        return any(wanted.serves(d.kind, d.tags) for d in live)

    problems: list[str] = []
    seen: set[str] = set()
    for where, key in config.named_metrics():
        if key.metric in MEASURED and key.device_class and not covered(key.device_class):
            problems.append(f"{where}: no registered device of class {key.device_class!r}")
            seen.add(key.device_class)
    for i, name in enumerate(config.device_classes or ()):
        if name not in seen and not covered(name):
            problems.append(f"device_classes[{i}]: no registered device of class {name!r}")
    return problems


def check_devices(config: SearchConfig, session: Any) -> None:
    """Raise ``SearchConfigError`` if a measured metric names a class no live device serves."""
    from star.db import repo

    problems = device_problems(config, repo.list_devices(session))
    if problems:
        raise SearchConfigError(problems)

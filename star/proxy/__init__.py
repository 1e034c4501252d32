"""Proxy quality: train a genome's small-width model briefly and score it.

MAD-style synthetic tasks (``star.proxy.tasks``) and real-text validation loss
(``star.proxy.text``), trained by ``train_proxy`` and run in parallel by ``ProxyPool`` (local
processes or Ray). ``ProxyConfig`` is the ``proxy:`` section of lab_config.yaml.

Importing this package does not import torch; ``train_proxy`` and ``ProxyPool`` do when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from star.proxy.config import (
    ALL_TASKS,
    DEFAULT_TASKS,
    MAD_TASKS,
    ProxyConfig,
    TaskParams,
    TextSettings,
)
from star.proxy.result import (
    ProxyResult,
    QualityComponent,
    TaskMetrics,
    TextMetrics,
    describe_quality,
)

if TYPE_CHECKING:
    from star.proxy.pool import ProxyJob, ProxyPool
    from star.proxy.train import ProxyConfigError, proxy_spec, train_proxy

__all__ = [
    "ALL_TASKS",
    "DEFAULT_TASKS",
    "MAD_TASKS",
    "ProxyConfig",
    "ProxyConfigError",
    "ProxyJob",
    "ProxyPool",
    "ProxyResult",
    "QualityComponent",
    "TaskMetrics",
    "TaskParams",
    "TextMetrics",
    "TextSettings",
    "describe_quality",
    "proxy_spec",
    "train_proxy",
]

_LAZY = {
    "ProxyJob": "star.proxy.pool",
    "ProxyPool": "star.proxy.pool",
    "ProxyConfigError": "star.proxy.train",
    "proxy_spec": "star.proxy.train",
    "train_proxy": "star.proxy.train",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'star.proxy' has no attribute {name!r}")

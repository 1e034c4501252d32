"""Runners for pool tests; module-level so that spawned worker processes can import them."""

from __future__ import annotations

import os

from star.proxy.config import ProxyConfig
from star.proxy.pool import ProxyJob
from star.proxy.result import ProxyResult


def crash_or_echo(job: ProxyJob, config: ProxyConfig) -> ProxyResult:
    """Kill the worker process outright for a job named "crash"; else echo the job."""
    if job.name == "crash":
        os._exit(3)
    return ProxyResult(name=job.label, seed=job.seed, device=f"pid:{os.getpid()}",
                       steps=config.threads or 0)

"""A ``ProxyPool`` runner that blocks forever (tests only): it writes its pid to the file named
by ``$STAR_TEST_PID_FILE`` and waits, standing for a long proxy training that its coordinator
must not outlive. Importable by spawned worker processes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from star.proxy.config import ProxyConfig
from star.proxy.pool import ProxyJob
from star.proxy.result import ProxyResult


def block_forever(job: ProxyJob, config: ProxyConfig) -> ProxyResult:
    target = Path(os.environ["STAR_TEST_PID_FILE"])
    tmp = target.with_suffix(".tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(target)
    threading.Event().wait()
    raise AssertionError("unreachable")

"""Waiting on state in tests: the one polling loop, so that every wait fails the same way.

A test that needs something to have happened (a job leased, a process started, a log line
written) waits for the evidence with ``wait_for``, never with a sleep of a guessed length.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, condition: Callable[[], T | None], timeout_s: float, *,
             interval_s: float = 0.05, on_timeout: Callable[[], str] | None = None) -> T:
    """Poll ``condition`` every ``interval_s`` until it returns something truthy; return that.

    After ``timeout_s`` without it, fail with an ``AssertionError`` that names ``what`` was
    awaited, the condition's last value and, when given, ``on_timeout()`` (agent logs, the
    page's text: whatever says why it did not happen). The condition is evaluated once more at
    the deadline, so a slow poll never turns success into a timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{on_timeout()}" if on_timeout is not None else ""
            raise AssertionError(
                f"timed out after {timeout_s:g} s waiting for {what} (last: {value!r}){detail}")
        time.sleep(interval_s)

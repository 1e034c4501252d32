"""The tests' one waiting helper (tests/support/wait.py)."""

from __future__ import annotations

import itertools

import pytest

from tests.support.wait import wait_for


def test_wait_for_returns_the_first_truthy_value() -> None:
    polls = itertools.count()
    assert wait_for("the third poll", lambda: [n] if (n := next(polls)) >= 2 else [], 5,
                    interval_s=0.001) == [2]


def test_wait_for_names_what_it_awaited_its_last_value_and_the_diagnostics() -> None:
    with pytest.raises(AssertionError) as failed:
        wait_for("the job to be done", lambda: "", 0.05, interval_s=0.01,
                 on_timeout=lambda: "agent log: connection refused")
    message = str(failed.value)
    assert "waiting for the job to be done" in message and "(last: '')" in message
    assert message.endswith("agent log: connection refused")


def test_wait_for_polls_once_more_at_the_deadline() -> None:
    polls = itertools.count()
    # the first poll fails, the interval outlasts the timeout: the second poll decides
    assert wait_for("a late success", lambda: next(polls) == 1, 0.01, interval_s=0.05) is True

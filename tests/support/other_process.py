"""Run a snippet in a fresh interpreter, to show a result does not depend on the process.

Python's ``hash()`` of a str is salted per process (``PYTHONHASHSEED``): anything that iterates
a set of strings, or keys identity on ``hash()``, can differ from one process to the next while
agreeing with itself within one. A test that claims "deterministic" runs the computation again
under other salts and compares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def in_another_process(code: str, *, hash_seed: int, timeout_s: float = 120) -> Any:
    """Run ``code`` (which prints one JSON document) with ``PYTHONHASHSEED=hash_seed`` in the
    repository root; return the document."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": str(hash_seed)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)

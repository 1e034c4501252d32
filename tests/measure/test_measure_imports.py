"""The measurement package stays light: agents run on hosts without torch or a database."""

from __future__ import annotations

import subprocess
import sys


def test_device_agents_llamacpp_imports_no_heavy_module() -> None:
    code = (
        "import sys, device_agents.llamacpp\n"
        "heavy = ('torch', 'numpy', 'sqlalchemy', 'alembic', 'gguf', 'star')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"

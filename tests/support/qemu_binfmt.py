"""Build (once) the emulated phone's user-space binfmt shim: ``emulated_binfmt.c`` as a shared
library that the phone's processes preload, so that a pushed aarch64 ELF runs through
``qemu-aarch64`` exactly where a phone's kernel would run it natively (see the C file).

The library is compiled with the host's C compiler into the cache (keyed by the source's
sha256), in well under a second, and reused by every phone of every session.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("emulated_binfmt.c")


def qemu_aarch64() -> str | None:
    """The qemu user-mode emulator for aarch64 (Debian qemu-user or qemu-user-static)."""
    for name in ("qemu-aarch64", "qemu-aarch64-static"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _cache_dir() -> Path:
    env = os.environ.get("STAR_CACHE_DIR")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "star-lab"
    return root / "test-support"


def binfmt_library() -> Path | None:
    """The compiled shim (built on first use), or None where no C compiler exists."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = _cache_dir() / f"libstar_binfmt-{digest}.so"
    if target.is_file():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".binfmt-", suffix=".so")
    os.close(fd)
    try:
        subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", tmp, str(SOURCE), "-ldl"],
            check=True, capture_output=True, timeout=120,
        )
        os.replace(tmp, target)  # atomic: concurrent sessions race harmlessly
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target

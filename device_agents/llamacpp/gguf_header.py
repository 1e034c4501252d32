"""A tiny, dependency-free reader of a GGUF file's header and metadata (no tensor data).

The benchmark validates its input before spending device time: the file exists, is a GGUF, and
the requested contexts fit the model's ``{arch}.context_length``. The ``gguf`` package would do,
but agents stay light (stdlib only), so this reads the documented layout directly:

    magic "GGUF" | version u32 | tensor_count u64 | kv_count u64 | kv_count x (key, type, value)

Long arrays (the tokenizer's 65K strings) are skipped, not kept; numeric arrays up to
``_MAX_ARRAY`` items (per-layer head counts) are kept.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"
_MAX_ARRAY = 4096
_MAX_STRING = 1 << 24  # a key or string value longer than 16 MiB means a corrupt file

# GGUF value types -> struct format (little-endian prefix added per file)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """The file is not a readable GGUF; the message names the file and the problem."""


@dataclass(frozen=True)
class GGUFHeader:
    path: Path
    version: int
    tensor_count: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def context_length(self) -> int | None:
        """``{arch}.context_length``: the longest context the model was built for, if recorded."""
        arch = self.architecture
        value = self.metadata.get(f"{arch}.context_length") if arch else None
        return int(value) if isinstance(value, int) else None


def is_gguf(path: str | Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Read the header and metadata of ``path``; raise GGUFError (or OSError) otherwise."""
    path = Path(path)
    with open(path, "rb") as raw:
        handle = io.BufferedReader(raw, buffer_size=1 << 16)
        if handle.read(4) != GGUF_MAGIC:
            raise GGUFError(f"{path}: not a GGUF file (magic is not 'GGUF')")
        head = handle.read(4)
        if len(head) < 4:
            raise GGUFError(f"{path}: truncated GGUF header")
        endian = "<"
        (version,) = struct.unpack("<I", head)
        if version > 0xFFFF:  # a big-endian file written for s390x and the like
            endian = ">"
            (version,) = struct.unpack(">I", head)
        if version < 2:
            raise GGUFError(f"{path}: GGUF version {version} is not supported (need 2 or 3)")
        reader = _Reader(handle, endian, path)
        tensor_count = reader.scalar("Q")
        kv_count = reader.scalar("Q")
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = reader.string()
            metadata[key] = reader.value(reader.scalar("I"))
    return GGUFHeader(path=path, version=version, tensor_count=tensor_count, metadata=metadata)


class _Reader:
    def __init__(self, handle: BinaryIO, endian: str, path: Path) -> None:
        self._handle, self._endian, self._path = handle, endian, path

    def _read(self, n: int) -> bytes:
        data = self._handle.read(n)
        if len(data) != n:
            raise GGUFError(f"{self._path}: truncated GGUF metadata")
        return data

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack(self._endian + fmt, self._read(size))[0]

    def string(self) -> str:
        n = self.scalar("Q")
        if n > _MAX_STRING:
            raise GGUFError(f"{self._path}: corrupt GGUF metadata (string of {n} bytes)")
        return self._read(n).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind = self.scalar("I")
            count = self.scalar("Q")
            if item_kind in _SCALARS:
                fmt = _SCALARS[item_kind]
                size = count * struct.calcsize(fmt)
                if count > _MAX_ARRAY:
                    self._handle.seek(size, io.SEEK_CUR)  # skip: kept values stay small
                    return None
                return list(struct.unpack(f"{self._endian}{count}{fmt}", self._read(size)))
            for _ in range(count):
                if item_kind == _STRING:  # the tokenizer's vocabulary: skip without decoding
                    self._handle.seek(self.scalar("Q"), io.SEEK_CUR)
                else:
                    self.value(item_kind)
            return None  # string (or nested) arrays are skipped: only the tokenizer has them
        raise GGUFError(f"{self._path}: corrupt GGUF metadata (value type {kind})")

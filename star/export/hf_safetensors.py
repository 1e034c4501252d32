"""A streaming safetensors writer (the format transformers loads), without the safetensors package.

The format is small and fixed: an 8-byte little-endian header length, a JSON header mapping each
tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the data that
follows) plus ``"__metadata__"``, padded with spaces to a multiple of 8, then the raw little-endian
tensor bytes, back to back, in header order. Writing it here keeps ``safetensors`` (a
transformers dependency) out of the exporter's dependencies, and lets the writer produce one
tensor at a time, so memory stays at the size of the source weights however large the model.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from star.export.errors import ExportReadbackError, ExportValidationError

DTYPES: dict[str, np.dtype[Any]] = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}
ALIGN = 8


@dataclass(frozen=True)
class StTensor:
    """One tensor to write: its shape is known up front, its data is produced when written."""

    name: str
    shape: tuple[int, ...]
    produce: Callable[[], np.ndarray]


def _header(tensors: Sequence[StTensor], dtype: str, metadata: dict[str, str]) -> bytes:
    item = DTYPES[dtype].itemsize
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for t in tensors:
        size = int(np.prod(t.shape, dtype=np.int64)) * item
        header[t.name] = {
            "dtype": dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % ALIGN)


def write_safetensors(
    path: Path, tensors: Sequence[StTensor], *, dtype: str, metadata: dict[str, str]
) -> str:
    """Write ``tensors`` (in this order) as ``dtype``; returns the file's sha256.

    Raises ``ExportValidationError`` when a produced array's shape differs from the declared one
    (the header is already written by then: callers write to a temporary path).
    """
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ExportValidationError(dup, "planned twice")
    header = _header(tensors, dtype, metadata)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for chunk in (struct.pack("<Q", len(header)), header):
            f.write(chunk)
            digest.update(chunk)
        for t in tensors:
            data = np.ascontiguousarray(t.produce(), dtype=DTYPES[dtype])
            if data.shape != t.shape:
                raise ExportValidationError(t.name, f"produced shape {data.shape} != {t.shape}")
            buf = data.tobytes()  # one tensor at a time
            f.write(buf)
            digest.update(buf)
    return digest.hexdigest()


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, checked against the file size."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header: dict[str, Any] = json.loads(f.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if path.stat().st_size != 8 + n + end:
        raise ExportReadbackError(f"{path}: {path.stat().st_size} bytes, header says {8 + n + end}")
    return header

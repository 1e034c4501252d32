"""The artifact store: content-addressed files under one root directory.

A file's place is ``<sha[:2]>/<sha>.<format>``; the database keeps that relative path. Every path
read back from the database is resolved and checked to lie inside the root, so neither an id nor a
tampered row can reach outside the store.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

_FORMAT = re.compile(r"^[a-z0-9]{1,16}$")
CHUNK = 1024 * 1024


class StoreError(ValueError):
    """A path outside the store, or content that does not match its checksum."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def resolve(self, relative: str) -> Path:
        """The absolute path of a stored file; refuses anything outside the root."""
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or candidate == self.root:
            raise StoreError(f"artifact path {relative!r} is outside the artifact store")
        return candidate

    @staticmethod
    def relative_path(sha256: str, fmt: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise StoreError("sha256 must be 64 lowercase hex digits")
        if not _FORMAT.fullmatch(fmt):
            raise StoreError(f"format {fmt!r} must be 1-16 lowercase letters or digits")
        return f"{sha256[:2]}/{sha256}.{fmt}"

    def new_temp(self) -> Path:
        """An empty temporary file inside the store (same filesystem: the final move is atomic)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".upload-", dir=self.root)
        os.close(fd)
        return Path(name)

    def commit_temp(self, tmp: Path, *, sha256: str, fmt: str) -> str:
        """Move a fully written temp file to its content address; returns the relative path."""
        relative = self.relative_path(sha256, fmt)
        final = self.resolve(relative)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        return relative

    def put_chunks(
        self,
        chunks: Iterable[bytes],
        *,
        fmt: str,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> tuple[str, str, int]:
        """Write a stream into the store; returns (relative path, sha256, size)."""
        digest = hashlib.sha256()
        size = 0
        tmp = self.new_temp()
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise StoreError(f"artifact is larger than {max_bytes} bytes")
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            sha = digest.hexdigest()
            if expected_sha256 is not None and sha != expected_sha256.lower():
                raise StoreError(f"content sha256 {sha} does not match {expected_sha256}")
            if size == 0:
                raise StoreError("artifact is empty")
            return self.commit_temp(tmp, sha256=sha, fmt=fmt), sha, size
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, source: Path, *, fmt: str) -> tuple[str, str, int]:
        """Copy a file into the store; returns (relative path, sha256, size)."""

        def chunks() -> Iterable[bytes]:
            with open(source, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        return self.put_chunks(chunks(), fmt=fmt)

    def copy_out(self, relative: str, dest: Path) -> Path:
        shutil.copyfile(self.resolve(relative), dest)
        return dest

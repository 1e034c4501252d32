"""The result spool: a finished measurement is on disk before the coordinator hears of it.

``put`` writes ``<dir>/<job>-<key>.json`` atomically (temp file, fsync, rename, fsync of the
directory), so a crash leaves either the whole entry or none. An entry is removed only when the
coordinator acknowledged it; an entry the coordinator refuses for good (a 4xx: the job was
measured by someone else or cancelled, a figure out of bounds; or a 5xx answered until the
agent's bound, ``client.GaveUp``) moves to ``rejected/`` rather than being deleted, and is never
sent again. At start-up the agent delivers every pending entry before it leases new work.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from device_agents.protocol import ResultSubmission


@dataclass(frozen=True)
class SpoolEntry:
    path: Path
    job_id: int
    submission: ResultSubmission


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def put(self, job_id: int, submission: ResultSubmission) -> SpoolEntry:
        payload = json.dumps({"job_id": job_id, "submission": submission.model_dump(mode="json")})
        final = self.dir / f"{job_id}-{submission.idempotency_key}.json"
        fd, tmp = tempfile.mkstemp(prefix=".spool-", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.dir)
        return SpoolEntry(final, job_id, submission)

    def pending(self) -> list[SpoolEntry]:
        """Entries waiting for delivery, oldest first. Unreadable files move to ``corrupt/``."""
        entries = []
        files = sorted(self.dir.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name))
        for path in files:
            try:
                data = json.loads(path.read_text())
                submission = ResultSubmission.model_validate(data["submission"])
                entries.append(SpoolEntry(path, int(data["job_id"]), submission))
            except (OSError, ValueError, KeyError, TypeError, ValidationError):
                self._move(path, "corrupt")
        return entries

    def remove(self, entry: SpoolEntry) -> None:
        """Delete an acknowledged entry."""
        entry.path.unlink(missing_ok=True)
        _fsync_dir(self.dir)

    def reject(self, entry: SpoolEntry) -> Path:
        """Keep an entry the coordinator refused for good, out of the delivery queue."""
        return self._move(entry.path, "rejected")

    def _move(self, path: Path, sub: str) -> Path:
        target = self.dir / sub
        target.mkdir(exist_ok=True)
        dest = target / path.name
        os.replace(path, dest)
        _fsync_dir(self.dir)
        return dest

    def __len__(self) -> int:
        return len(list(self.dir.glob("*.json")))

"""Test factories for the lab: databases (SQLite file / PostgreSQL), rows, reports, live servers.

PostgreSQL: ``STAR_TEST_POSTGRES_URL`` if set, else ``scripts/start_postgres.sh`` starts a private
cluster once per test process (stopped at exit). If it cannot start, the test errors: it is never
silently skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from device_agents.protocol import API_PREFIX
from device_agents.schemas import (
    BenchReport,
    ContextMeasurement,
    RuntimeSettings,
    Stat,
    Thermal,
)
from star.config import LabSettings, load_settings
from star.db import Database, repo, upgrade
from star.db.snapshots import ArtifactSnapshot, DeviceSnapshot, JobSnapshot
from star.db.store import ArtifactStore
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parent.parent
START_POSTGRES = ROOT / "scripts" / "start_postgres.sh"
ADMIN_TOKEN = "test-admin-token-0123456789"

# --- databases -------------------------------------------------------------------------------

_pg_lock = threading.Lock()
_pg_url: str | None = None


def postgres_server_url() -> str:
    """URL of a PostgreSQL server (its maintenance database); started once per process."""
    global _pg_url
    with _pg_lock:
        if _pg_url is not None:
            return _pg_url
        env_url = os.environ.get("STAR_TEST_POSTGRES_URL")
        if env_url:
            _pg_url = env_url
            return _pg_url
        cluster = Path(f"/tmp/star-pg-test-{os.getpid()}")
        proc = subprocess.run(
            ["bash", str(START_POSTGRES), "--dir", str(cluster), "--fast"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL could not be started by {START_POSTGRES} "
                f"(exit {proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        _pg_url = proc.stdout.strip().splitlines()[-1]
        atexit.register(
            subprocess.run,
            ["bash", str(START_POSTGRES), "--stop", str(cluster)],
            capture_output=True,
            timeout=120,
        )
        return _pg_url


def fresh_postgres_url() -> str:
    """A new, empty database on the test PostgreSQL server."""
    server = make_url(postgres_server_url())
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop a database made by ``fresh_postgres_url`` (SQLite files go with tmp_path)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    admin = create_engine(
        parsed.set(drivername="postgresql+psycopg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


def database_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'star.db'}"
    if backend == "postgresql":
        return fresh_postgres_url()
    raise ValueError(backend)


def migrated_database(url: str) -> Database:
    db = Database(url)
    upgrade(db)
    return db


def make_settings(tmp_path: Path, url: str, **server: Any) -> LabSettings:
    """Settings for a test lab: the repository's lab_config.yaml is not read."""
    return load_settings(
        read_files=False,
        data_dir=tmp_path / "data",
        artifact_store=tmp_path / "data" / "artifacts",
        database_url=url,
        admin_token=ADMIN_TOKEN,
        coordinator={"lease_seconds": 30.0, "reaper_interval_s": 0.5, **server},
        agent={"poll_interval_s": 0.2},
    )


# --- rows ------------------------------------------------------------------------------------


def make_device(
    db: Database, name: str = "dev", kind: str = "x86", tags: Sequence[str] = ()
) -> tuple[DeviceSnapshot, str]:
    with db.session_scope() as s:
        return repo.create_device(s, name=name, kind=kind, tags=tags)


def make_artifact(
    db: Database, store: ArtifactStore, payload: bytes | None = None, *, fmt: str = "gguf"
) -> ArtifactSnapshot:
    payload = payload if payload is not None else os.urandom(256)
    relative, sha, size = store.put_chunks([payload], fmt=fmt)
    with db.session_scope() as s:
        return repo.register_artifact(
            s, sha256=sha, size_bytes=size, path=relative, format=fmt, quant="f32"
        )


def make_job(
    db: Database,
    artifact_id: int,
    *,
    contexts: Sequence[int] = (128, 256),
    device_id: int | None = None,
    device_kind: str | None = "x86",
    device_tags: Sequence[str] = (),
    max_attempts: int = 3,
    repetitions: int = 2,
) -> JobSnapshot:
    with db.session_scope() as s:
        return repo.create_profile_job(
            s,
            artifact_id=artifact_id,
            contexts=contexts,
            repetitions=repetitions,
            device_id=device_id,
            device_kind=None if device_id is not None else device_kind,
            device_tags=device_tags,
            max_attempts=max_attempts,
        )


# --- reports ---------------------------------------------------------------------------------


def make_report(
    sha256: str,
    contexts: Sequence[int] = (128, 256),
    *,
    temp_c: float = 35.0,
    spread: float = 0.01,
    repetitions: int = 2,
) -> BenchReport:
    measured = []
    for c in contexts:
        ttft = c * 0.5
        measured.append(
            ContextMeasurement(
                context=c,
                ttft_ms=Stat(median=ttft, stddev=ttft * spread, samples=[ttft] * repetitions),
                decode_ms_per_token=Stat(median=5.0, stddev=5.0 * spread, samples=[5.0] * 2),
                peak_rss_bytes=100_000_000 + c * 1000,
                thermal_before=Thermal(zones={"cpu": temp_c}),
                thermal_after=Thermal(zones={"cpu": temp_c + 1}),
            )
        )
    return BenchReport(
        model_sha256=sha256,
        model_bytes=256,
        runtime=RuntimeSettings(
            llama_cpp_commit="abc1234",
            threads=2,
            flash_attn=False,
            n_gen=16,
            repetitions=repetitions,
        ),
        contexts=measured,
    )


# --- live coordinators -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(base_url: str, timeout_s: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    def healthy() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"coordinator exited with {proc.returncode}")
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(f"the coordinator at {base_url} to come up", healthy, timeout_s)


class AppThread:
    """uvicorn serving an ASGI ``app`` in a thread, on a free loopback port; entering starts it
    and waits for its /healthz, leaving stops it."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        wait_up(self.url)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class ThreadServer(AppThread):
    """The coordinator, ``create_app(settings)``, served in a thread."""

    def __init__(self, settings: LabSettings) -> None:
        from star.lab import create_app

        super().__init__(create_app(settings))


class ProcessServer:
    """The coordinator as a real subprocess (uvicorn) that tests can kill and restart."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.proc: subprocess.Popen | None = None

    def start(self) -> ProcessServer:
        cmd = [
            sys.executable, "-m", "uvicorn", "star.lab.asgi:app_from_env", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
        ]  # fmt: skip
        # its own process group: kill() takes its children (proxy-training workers) with it,
        # as a crashed host would
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, start_new_session=True)
        wait_up(self.url, proc=self.proc)
        return self

    def admin(self, timeout_s: float) -> httpx.Client:
        """A client of this server with the admin token (the caller closes it)."""
        return httpx.Client(base_url=self.url, headers=admin_headers(), timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL to the server and every process it started."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def coordinator_process(tmp_path: Path, **server: Any) -> tuple[Database, ProcessServer]:
    """A migrated SQLite database under ``tmp_path`` and the coordinator process serving it with
    ``make_settings(tmp_path, url, **server)``, started (the caller stops it)."""
    url = database_url("sqlite", tmp_path)
    db = migrated_database(url)
    return db, ProcessServer(settings_env(make_settings(tmp_path, url, **server))).start()


def settings_env(settings: LabSettings) -> dict[str, str]:
    """The ``STAR_*`` variables that reproduce ``settings`` in a child process."""
    env = {
        "STAR_DATA_DIR": str(settings.data_dir),
        "STAR_DATABASE_URL": settings.db_url,
        "STAR_ARTIFACT_STORE": str(settings.store_dir),
        "STAR_ADMIN_TOKEN": ADMIN_TOKEN,
        "STAR_CONFIG": str(settings.data_dir / "absent.yaml"),
    }
    for key, value in settings.coordinator.model_dump().items():
        if value is not None:
            env[f"STAR_COORDINATOR__{key.upper()}"] = str(value)
    for key, value in settings.agent.model_dump().items():
        if value is not None:
            env[f"STAR_AGENT__{key.upper()}"] = str(value)
    return env


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api(path: str) -> str:
    return f"{API_PREFIX}{path}"

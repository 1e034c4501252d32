"""Load benchmark of the coordinator (not a test): N simulated agents against a real server.

    python bench/lab_load.py [--agents 100] [--duration 20] [--rate 1.0] [--backend both]

For each backend (SQLite file, PostgreSQL) it migrates a fresh database, starts the coordinator
(uvicorn, a subprocess on a free loopback port), registers N devices through the admin API and
queues profile jobs; then every agent makes ``--rate`` requests a second for ``--duration``
seconds, cycling lease -> heartbeat -> result (heartbeat alone when no job is queued). It prints
leases/s, requests/s, p50/p99 latency (overall and per request kind) and the error count.
Target: 100 agents at 1 request/s each, 0 errors, p99 < 100 ms, when the load generator does
not share the server's cores.

Cores: the coordinator (and a PostgreSQL cluster the run starts) is pinned to ``--server-cpus``
and the load generator to ``--client-cpus`` (``sched_setaffinity``, what ``taskset -c`` does);
by default this process's CPUs are split in halves. Otherwise the generator's own CPU time
shows up as server latency. ``--no-pin`` shares every core. The 1-minute load average at the
start is printed with the results: other work on the machine is latency too.

PostgreSQL: ``--postgres-url`` (a server URL; a fresh database is created on it), else
``scripts/start_postgres.sh`` starts a private cluster for the run (fsync on) and stops it after.
Only loopback addresses are used; the run is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device_agents.protocol import API_PREFIX  # noqa: E402
from device_agents.schemas import (  # noqa: E402
    BenchReport,
    ContextMeasurement,
    RuntimeSettings,
    Stat,
)

ADMIN = "bench-admin-token-0123456789"


def parse_cpus(spec: str) -> set[int]:
    """``taskset -c`` syntax: "0-3,6" -> {0, 1, 2, 3, 6}."""
    cpus: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.strip().partition("-")
        cpus |= set(range(int(low), int(high or low) + 1))
    return cpus


def split_cpus(args: argparse.Namespace) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load-generator CPUs); None: not pinned."""
    if args.no_pin:
        return None, None
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < 2 and not (args.server_cpus and args.client_cpus):
        return None, None  # one core: nothing to split
    half = len(mine) // 2
    server = parse_cpus(args.server_cpus) if args.server_cpus else set(mine[:half])
    client = parse_cpus(args.client_cpus) if args.client_cpus else set(mine) - server
    if server & client:
        raise SystemExit(f"--server-cpus {sorted(server)} and --client-cpus {sorted(client)} "
                         "overlap: the point is that they do not")
    return server, client


def pinned(cpus: set[int] | None) -> Any:
    """A ``preexec_fn`` that pins the child (and so its workers) to ``cpus``."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)
CONTEXTS = [512, 2048]


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    leases: int = 0

    def record(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds * 1000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu(proc: Any) -> float:
    """CPU seconds of the server and its workers."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def report_for(sha: str) -> dict:  # type: ignore[type-arg]
    contexts = [
        ContextMeasurement(
            context=c,
            ttft_ms=Stat(median=c * 0.4, stddev=1.0, samples=[c * 0.4] * 3),
            decode_ms_per_token=Stat(median=6.0, stddev=0.1, samples=[6.0] * 3),
            peak_rss_bytes=200_000_000 + c * 4096,
        )
        for c in CONTEXTS
    ]
    report = BenchReport(
        model_sha256=sha,
        model_bytes=1024,
        runtime=RuntimeSettings(
            llama_cpp_commit="bench", threads=4, flash_attn=False, n_gen=32, repetitions=3
        ),
        contexts=contexts,
    )
    return report.model_dump(mode="json")


def fresh_postgres(server_url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"bench_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


def seed(url: str, store_dir: Path, jobs: int) -> str:
    """Migrate and queue ``jobs`` profile jobs for any x86 device; returns the artifact sha."""
    from star.db import Database, repo, upgrade
    from star.db.store import ArtifactStore

    db = Database(url)
    upgrade(db)
    store = ArtifactStore(store_dir)
    relative, sha, size = store.put_chunks([os.urandom(1024)], fmt="gguf")
    with db.session_scope() as s:
        art = repo.register_artifact(
            s, sha256=sha, size_bytes=size, path=relative, format="gguf", quant="q4_0"
        )
        for _ in range(jobs):
            repo.create_profile_job(
                s, artifact_id=art.id, contexts=CONTEXTS, repetitions=3, device_kind="x86"
            )
    db.dispose()
    return sha


async def agent_loop(
    http: httpx.AsyncClient, token: str, sha: str, rate: float, until: float, stats: Stats
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    period = 1.0 / rate
    job: dict | None = None  # type: ignore[type-arg]
    step = "lease"
    next_at = time.monotonic() + random.uniform(0, period)  # spread the agents' phases
    while True:
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.monotonic() >= until:
            return
        next_at += period
        try:
            start = time.perf_counter()
            if step == "lease":
                r = await http.post(f"{API_PREFIX}/agent/lease", headers=headers)
                kind = "lease"
            elif step == "heartbeat" and job is not None:
                beat = {"job_id": job["job_id"], "lease_token": job["lease_token"]}
                r = await http.post(f"{API_PREFIX}/agent/heartbeat", headers=headers, json=beat)
                kind = "heartbeat"
            elif step == "result" and job is not None:
                body = {
                    "lease_token": job["lease_token"],
                    "idempotency_key": uuid.uuid4().hex,
                    "report": report_for(sha),
                }
                r = await http.post(
                    f"{API_PREFIX}/agent/jobs/{job['job_id']}/result", headers=headers, json=body
                )
                kind = "result"
            else:
                r = await http.post(
                    f"{API_PREFIX}/agent/heartbeat", headers=headers, json={"online": True}
                )
                kind = "heartbeat"
            stats.record(kind, time.perf_counter() - start)
            if r.status_code != 200:
                stats.errors.append(f"{kind}: HTTP {r.status_code} {r.text[:200]}")
                step, job = "lease", None
                continue
            if kind == "lease":
                job = r.json()["job"]
                if job is not None:
                    stats.leases += 1
                    step = "heartbeat"
                else:
                    step = "idle"
            elif kind == "heartbeat" and step == "heartbeat":
                step = "result"
            else:
                step, job = "lease", None
        except httpx.HTTPError as exc:
            stats.errors.append(f"{step}: {exc!r}")
            step, job = "lease", None


async def drive(url: str, tokens: list[str], sha: str, rate: float, duration: float) -> Stats:
    stats = Stats()
    limits = httpx.Limits(max_connections=len(tokens) + 10, max_keepalive_connections=len(tokens))
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        until = time.monotonic() + duration
        await asyncio.gather(*(agent_loop(http, t, sha, rate, until, stats) for t in tokens))
    return stats


def run_backend(  # type: ignore[type-arg]
    name: str, url: str, args: argparse.Namespace, workdir: Path,
    server_cpus: set[int] | None = None,
) -> dict:
    data = workdir / name
    jobs = int(args.agents * args.duration * args.rate / 3) + args.agents
    sha = seed(url, data / "artifacts", jobs)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STAR_CONFIG": str(data / "none.yaml"),
        "STAR_DATA_DIR": str(data),
        "STAR_DATABASE_URL": url,
        "STAR_ADMIN_TOKEN": ADMIN,
        "STAR_COORDINATOR__LEASE_SECONDS": "120",
    }
    cmd = [
        sys.executable, "-m", "uvicorn", "star.lab.asgi:app_from_env", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--no-access-log", "--workers", str(args.workers),
    ]  # fmt: skip
    server = subprocess.Popen(cmd, env=env, cwd=ROOT, preexec_fn=pinned(server_cpus))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the coordinator did not start")
            time.sleep(0.1)
        admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"})
        tokens = []
        for i in range(args.agents):  # registration through the API, as the CLI does it
            r = admin.post(f"{API_PREFIX}/devices", json={"name": f"agent-{i:03d}", "kind": "x86"})
            r.raise_for_status()
            tokens.append(r.json()["token"])
        admin.close()
        import psutil

        proc = psutil.Process(server.pid)
        load_at_start = os.getloadavg()[0]
        cpu_before = _cpu(proc)
        started = time.monotonic()
        stats = asyncio.run(drive(base, tokens, sha, args.rate, args.duration))
        elapsed = time.monotonic() - started
        server_cpu = _cpu(proc) - cpu_before
    finally:
        server.terminate()
        server.wait(timeout=30)
    every = [v for values in stats.latencies.values() for v in values]
    return {
        "backend": name,
        "agents": args.agents,
        "server_cpus": sorted(server_cpus) if server_cpus is not None else "all",
        "client_cpus": sorted(os.sched_getaffinity(0)),
        "loadavg_1m_at_start": round(load_at_start, 2),
        "duration_s": round(elapsed, 1),
        "requests": len(every),
        "requests_per_s": round(len(every) / elapsed, 1),
        "leases": stats.leases,
        "leases_per_s": round(stats.leases / elapsed, 2),
        "p50_ms": round(percentile(every, 50), 1),
        "p99_ms": round(percentile(every, 99), 1),
        "max_ms": round(max(every), 1) if every else None,
        "by_kind": {
            k: {
                "n": len(v),
                "p50_ms": round(percentile(v, 50), 1),
                "p99_ms": round(percentile(v, 99), 1),
            }
            for k, v in sorted(stats.latencies.items())
        },
        "server_cpu_ms_per_request": round(server_cpu * 1000 / max(1, len(every)), 2),
        "errors": len(stats.errors),
        "first_errors": stats.errors[:5],
        "mean_ms": round(statistics.fmean(every), 1) if every else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=1.0, help="requests per second per agent")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--postgres-url", default=os.environ.get("STAR_TEST_POSTGRES_URL"))
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--server-cpus", help="CPUs of the coordinator and of a PostgreSQL it "
                                              "starts (taskset -c syntax; default: first half)")
    parser.add_argument("--client-cpus", help="CPUs of the load generator (default: the rest)")
    parser.add_argument("--no-pin", action="store_true", help="share every core")
    args = parser.parse_args()
    assert args.duration <= 600, "keep the run bounded"
    server_cpus, client_cpus = split_cpus(args)
    if client_cpus is not None:
        os.sched_setaffinity(0, client_cpus)  # the load generator: this process

    results = []
    with tempfile.TemporaryDirectory(prefix="lab-load-") as tmp:
        workdir = Path(tmp)
        if args.backend in ("sqlite", "both"):
            results.append(run_backend("sqlite", f"sqlite:///{workdir / 'lab.db'}", args, workdir,
                                       server_cpus))
        if args.backend in ("postgresql", "both"):
            cluster = None
            server_url = args.postgres_url
            if not server_url:
                cluster = workdir / "pg"
                script = ROOT / "scripts" / "start_postgres.sh"
                out = subprocess.run(
                    ["bash", str(script), "--dir", f"/tmp/lab-load-pg-{os.getpid()}"],
                    capture_output=True, text=True, check=True, preexec_fn=pinned(server_cpus),
                )  # fmt: skip
                server_url = out.stdout.strip().splitlines()[-1]
                cluster = Path(f"/tmp/lab-load-pg-{os.getpid()}")
            try:
                results.append(run_backend("postgresql", fresh_postgres(server_url), args,
                                           workdir, server_cpus))
            finally:
                if cluster is not None:
                    subprocess.run(
                        ["bash", str(ROOT / "scripts/start_postgres.sh"), "--stop", str(cluster)],
                        capture_output=True,
                    )  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        ok = r["errors"] == 0 and r["p99_ms"] < 100
        print(
            f"{r['backend']:10} agents={r['agents']} {r['duration_s']}s  "
            f"server CPUs={r['server_cpus']} load generator CPUs={r['client_cpus']}  "
            f"load average at start={r['loadavg_1m_at_start']}  "
            f"requests/s={r['requests_per_s']}  leases/s={r['leases_per_s']}  "
            f"p50={r['p50_ms']} ms  p99={r['p99_ms']} ms  max={r['max_ms']} ms  "
            f"server CPU/request={r['server_cpu_ms_per_request']} ms  "
            f"errors={r['errors']}  target {'MET' if ok else 'MISSED'}"
        )
        for kind, s in r["by_kind"].items():
            print(f"{'':12}{kind:10} n={s['n']:6}  p50={s['p50_ms']} ms  p99={s['p99_ms']} ms")
        for e in r["first_errors"]:
            print(f"{'':12}error: {e}")


if __name__ == "__main__":
    main()

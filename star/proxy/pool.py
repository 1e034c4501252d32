"""``ProxyPool``: several proxy trainings at once, in local worker processes or on Ray.

Local (default): a ``spawn`` process pool; each worker limits torch to ``threads`` intra-op
threads so that ``workers * threads <= cores``. Ray: when ``config.ray_address`` is set
("auto", "ray://host:10001", or "local" to start a local instance), each job is a Ray task asking
for ``threads`` CPUs; a Ray instance already initialised in this process is used as is. Workers
must be able to import ``star`` (installed on every node of a remote cluster).

Results come back in the order of the jobs. A failing candidate never stops the pool: a Python
error becomes a ``ProxyResult`` with ``error`` set; a worker process that dies (killed for
memory, crashed) breaks a local pool, so the jobs it took down are run again one at a time in
fresh processes, and the one that dies again is reported failed.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from star.genome.spec import ArchSpec
from star.proxy.config import ProxyConfig
from star.proxy.result import ProxyResult


@dataclass(frozen=True)
class ProxyJob:
    """One candidate to train: its proxy-scale spec and seed (``config`` overrides the pool's)."""

    spec: ArchSpec
    seed: int = 0
    name: str | None = None
    weights_path: Path | None = None
    config: ProxyConfig | None = None

    @property
    def label(self) -> str:
        return self.name or self.spec.name


Runner = Callable[[ProxyJob, ProxyConfig], ProxyResult]


def run_job(job: ProxyJob, config: ProxyConfig) -> ProxyResult:
    """Train one job; every exception becomes a failed result (the pool must survive it)."""
    try:
        from star.proxy.train import train_proxy

        return train_proxy(
            job.spec,
            job.config or config,
            seed=job.seed,
            name=job.label,
            weights_path=job.weights_path,
        )
    except Exception as exc:  # noqa: BLE001 - reported, never raised into the pool
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
        return ProxyResult.failed(job.label, job.seed, f"{type(exc).__name__}: {exc}{where}")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_workers(config: ProxyConfig, cores: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker) with workers * threads <= cores (at least 1 each)."""
    cores = cores or available_cores()
    if config.workers is not None and config.threads is not None:
        return config.workers, config.threads
    if config.workers is not None:
        return config.workers, max(1, cores // config.workers)
    threads = config.threads or 1  # tiny models train fastest on one thread each
    return max(1, cores // threads), threads


def _init_worker(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(threads)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGTERM this worker when the process that started it dies (Linux
    PR_SET_PDEATHSIG), so a coordinator that is stopped or killed mid-training (``star serve``
    gets SIGTERM, or SIGKILL) leaves no orphaned trainer behind. Elsewhere: a no-op."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent was gone before the request took effect
        os._exit(1)


def _init_local_worker(threads: int, parent: int) -> None:
    _die_with_parent(parent)
    _init_worker(threads)


def _ray_task(runner: Runner, job: ProxyJob, config: ProxyConfig, threads: int) -> ProxyResult:
    _init_worker(threads)
    return runner(job, config)


class ProxyPool:
    """Runs ``ProxyJob`` s in parallel; use as a context manager (or call ``close``)."""

    def __init__(self, config: ProxyConfig, *, runner: Runner = run_job) -> None:
        self.config = config
        self.runner = runner
        self.workers, self.threads = plan_workers(config)
        self._executor: ProcessPoolExecutor | None = None
        self._started_ray = False

    @property
    def backend(self) -> str:
        return "ray" if self.config.ray_address else "local"

    def __enter__(self) -> ProxyPool:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False

    def _job_config(self, job: ProxyJob) -> ProxyConfig:
        base = job.config or self.config
        return base.model_copy(update={"threads": self.threads})

    def run(self, jobs: Sequence[ProxyJob]) -> list[ProxyResult]:
        """Train every job; results in the order of ``jobs``."""
        if not jobs:
            return []
        if self.config.ray_address:
            return self._run_ray(jobs)
        return self._run_local(jobs)

    # ---- local processes ----------------------------------------------------------------

    def _new_executor(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_local_worker,
            initargs=(self.threads, os.getpid()),
        )

    def _run_local(self, jobs: Sequence[ProxyJob]) -> list[ProxyResult]:
        if self._executor is None:
            self._executor = self._new_executor(self.workers)  # processes start on demand
        futures: list[Future[ProxyResult]] = [
            self._executor.submit(self.runner, job, self._job_config(job)) for job in jobs
        ]
        results: list[ProxyResult | None] = [None] * len(jobs)
        retry: list[int] = []
        for i, fut in enumerate(futures):
            try:
                results[i] = fut.result()
            except BrokenProcessPool:
                retry.append(i)
            except Exception as exc:  # noqa: BLE001 - e.g. a job that cannot be pickled
                results[i] = ProxyResult.failed(
                    jobs[i].label, jobs[i].seed, f"{type(exc).__name__}: {exc}"
                )
        if retry:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            for i in retry:  # one at a time: the job that dies again is the culprit
                with self._new_executor(1) as alone:
                    try:
                        results[i] = alone.submit(
                            self.runner, jobs[i], self._job_config(jobs[i])
                        ).result()
                    except BrokenProcessPool:
                        results[i] = ProxyResult.failed(
                            jobs[i].label,
                            jobs[i].seed,
                            "worker process died while training (killed by the OS, e.g. out "
                            "of memory, or crashed)",
                        )
        return [r for r in results if r is not None]

    # ---- Ray ------------------------------------------------------------------------------

    def _run_ray(self, jobs: Sequence[ProxyJob]) -> list[ProxyResult]:
        try:
            import ray
        except ImportError:
            raise RuntimeError(
                "ray_address is set but Ray is not installed (pip install 'ray[default]')"
            ) from None
        if not ray.is_initialized():
            address = self.config.ray_address
            if address == "local":
                ray.init(
                    num_cpus=self.workers * self.threads,
                    include_dashboard=False,
                    log_to_driver=False,
                )
            else:
                ray.init(address=address, log_to_driver=False)
            self._started_ray = True
        task = ray.remote(_ray_task).options(num_cpus=self.threads, max_retries=0)
        refs = [task.remote(self.runner, job, self._job_config(job), self.threads) for job in jobs]
        results: list[ProxyResult] = []
        for job, ref in zip(jobs, refs, strict=True):
            try:
                results.append(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ...
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                results.append(
                    ProxyResult.failed(job.label, job.seed, f"ray: {type(exc).__name__}: {first}")
                )
        return results

"""``AndroidDevice``: one phone behind an injected adbutils client, as the agent uses it.

Remote layout (``profile.remote_root``, default /data/local/tmp/star):

    bin/                    llama.cpp files named by the caller (llama-bench + its .so files)
    models/<sha256>.gguf    the model under test
    jobs/<job>/c<C>-<run>/  one directory per benchmark process (job.sh, out.txt, err.txt, rc)

What stays after a job is the profile's ``CachePolicy`` (default RUNTIME: bin/ only). Every remote
call has an explicit timeout; a phone that drops at any point raises ``DeviceGone``.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import shlex
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import adbutils  # type: ignore[import-untyped]

from device_agents.android.detached import DetachedRun, Launcher
from device_agents.android.errors import (
    AndroidError,
    BenchSetupError,
    CpuFeatureMissing,
    RuntimeCommitMismatch,
    TransferError,
)
from device_agents.android.phone_measure import PhoneContextRunner, mismatch
from device_agents.android.profile import CachePolicy, DeviceProfile, Pinning, resolve_pinning
from device_agents.android.thermal import CoolDown, read_thermal, wait_for_cooldown
from device_agents.android.transport import RemoteResult, Transport
from device_agents.llamacpp.commands import BenchSettings, validate_model
from device_agents.llamacpp.flags import LlamaBenchFlags, parse_help
from device_agents.llamacpp.results import RunOutcome
from device_agents.measure_policy import measure_contexts
from device_agents.protocol import RemeasurePolicy
from device_agents.schemas import BenchReport, DeviceProperties, RuntimeSettings, Thermal

log = logging.getLogger(__name__)

LLAMA_BENCH = "llama-bench"
_SHA_LINE = re.compile(r"^(\d+) ([0-9a-f]{64})\b")
_JOB_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_VERSION = re.compile(r"^version: .*\(build \d+, commit ([^\s)]+)\)", re.MULTILINE)


@dataclass(frozen=True)
class PushRecord:
    local: Path
    remote: str
    sha256: str
    bytes: int
    skipped: bool  # True: the phone already had a file with this sha256


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_getprop(text: str) -> dict[str, str]:
    """``getprop`` (no arguments) output, lines ``[key]: [value]`` -> dict."""
    props = {}
    for match in re.finditer(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.MULTILINE):
        props[match.group(1)] = match.group(2)
    return props


def parse_meminfo_total(text: str) -> int | None:
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


class AndroidDevice:
    """A phone, addressed by serial through ``client`` (never adbutils' module-level client)."""

    def __init__(
        self,
        client: adbutils.AdbClient,
        serial: str,
        profile: DeviceProfile | None = None,
    ) -> None:
        self.serial = serial
        self.profile = profile or DeviceProfile()
        self.transport = Transport(client, serial)
        self.root = self.profile.remote_root
        self._launcher: Launcher | None = None
        self._flags: dict[str, LlamaBenchFlags] = {}
        self._commits: dict[str, str | None] = {}

    @classmethod
    def discover(
        cls, client: adbutils.AdbClient, serial: str, profile: DeviceProfile | None = None
    ) -> AndroidDevice:
        """The phone ``serial`` if adb lists it as "device"; DeviceGone (or DeviceUnauthorized)
        otherwise. Uses ``adb.list()``: ``device_list()`` hides offline phones."""
        device = cls(client, serial, profile)
        device.transport.ensure_online()
        return device

    # -- basic calls -----------------------------------------------------------------------------
    def state(self) -> str | None:
        return self.transport.state()

    def shell(
        self, command: str, *, timeout_s: float | None = None, check: bool = False
    ) -> RemoteResult:
        """Run a shell command; returns its ``RemoteResult``."""
        return self.transport.shell(
            command, timeout_s=timeout_s or self.profile.call_timeout_s, check=check
        )

    def _q(self, *parts: str) -> str:
        return shlex.quote(posixpath.join(self.root, *parts))

    # -- properties ----------------------------------------------------------------------
    def properties(self) -> DeviceProperties:
        """Model, SoC, ABI, Android version and RAM, from getprop and /proc."""
        timeout = self.profile.call_timeout_s
        props = parse_getprop(self.transport.shell("getprop", timeout_s=timeout, check=True).stdout)
        meminfo = self.transport.shell("cat /proc/meminfo", timeout_s=timeout).stdout
        cores = self.transport.shell(
            "cat /sys/devices/system/cpu/possible 2>/dev/null", timeout_s=timeout
        ).stdout.strip()
        release = props.get("ro.build.version.release", "")
        sdk = props.get("ro.build.version.sdk", "")
        soc = props.get("ro.soc.model") or props.get("ro.board.platform") or props.get(
            "ro.hardware", ""
        )
        maker = props.get("ro.soc.manufacturer", "")
        return DeviceProperties(
            kind="android",
            model=props.get("ro.product.model", ""),
            soc=f"{maker} {soc}".strip() if maker and soc else soc,
            abi=props.get("ro.product.cpu.abi", ""),
            ram_bytes=parse_meminfo_total(meminfo),
            os=f"Android {release} (SDK {sdk})" if release or sdk else "",
            cpu=props.get("ro.hardware", ""),
            cpu_cores=_count_cpus(cores),
        )

    # -- files ----------------------------------------------------------------------
    def remote_sha256(self, paths: Sequence[str], *, timeout_s: float) -> dict[str, str]:
        """sha256 of each remote file that exists (one shell call for all of them)."""
        if not paths:
            return {}
        quoted = " ".join(shlex.quote(p) for p in paths)
        # answers "<index> <sha256>  -" per existing file: file names never need parsing
        result = self.transport.shell(
            f"i=0; for f in {quoted}; do "
            '[ -f "$f" ] && echo "$i $(sha256sum < "$f")"; i=$((i + 1)); done; true',
            timeout_s=timeout_s,
        )
        found = {}
        for line in result.stdout.splitlines():
            match = _SHA_LINE.match(line.strip())
            if match and int(match.group(1)) < len(paths):
                found[paths[int(match.group(1))]] = match.group(2)
        return found

    def _transfer_timeout(self, size: int) -> float:
        return 30.0 + size / self.profile.push_min_bytes_per_s

    def push_files(
        self, files: Mapping[str, Path], *, mode: int = 0o644, verify: bool = True
    ) -> list[PushRecord]:
        """Push ``{remote path: local file}``, skipping files whose sha256 already matches.

        After pushing, the phone's sha256 is checked against the local one (TransferError).
        """
        local = {remote: Path(path) for remote, path in files.items()}
        for path in local.values():
            if not path.is_file():
                raise TransferError(f"local file not found: {path}")
        sizes = {remote: path.stat().st_size for remote, path in local.items()}
        digests = {remote: sha256_file(path) for remote, path in local.items()}
        hash_timeout = self._transfer_timeout(sum(sizes.values()))
        have = self.remote_sha256(list(local), timeout_s=hash_timeout)
        records = []
        for remote, path in local.items():
            skipped = have.get(remote) == digests[remote]
            if not skipped:
                self.transport.push(
                    path, remote, timeout_s=self._transfer_timeout(sizes[remote]), mode=mode
                )
            records.append(PushRecord(path, remote, digests[remote], sizes[remote], skipped))
        pushed = [r.remote for r in records if not r.skipped]
        if verify and pushed:
            now = self.remote_sha256(pushed, timeout_s=hash_timeout)
            for remote in pushed:
                if now.get(remote) != digests[remote]:
                    raise TransferError(
                        f"{self.serial}: {remote}: sha256 on the phone is "
                        f"{now.get(remote, 'missing')}, expected {digests[remote]}"
                    )
        return records

    def push_runtime(self, files: Sequence[Path]) -> list[PushRecord]:
        """llama.cpp files (llama-bench and the shared libraries it loads) into bin/.

        A file that is a symlink to another file of the set (``libllama.so`` ->
        ``libllama.so.0``, as a cmake build lays them out) becomes a symlink on the phone: each
        library's bytes are pushed once, whatever names the loader asks for."""
        paths = [Path(f) for f in files]
        names = [p.name for p in paths]
        if LLAMA_BENCH not in names:
            raise BenchSetupError(f"runtime files must include {LLAMA_BENCH}: got {names}")
        bin_dir = posixpath.join(self.root, "bin")
        links: dict[str, str] = {}
        real: list[Path] = []
        for path in paths:
            target = _link_within(path, paths)
            if target is not None:
                links[path.name] = target
            else:
                real.append(path)
        records = self.push_files(
            {posixpath.join(bin_dir, p.name): p for p in real}, mode=0o755
        )
        if links:
            command = "; ".join(
                f"ln -sfn {shlex.quote(target)} {shlex.quote(posixpath.join(bin_dir, name))}"
                for name, target in sorted(links.items())
            )
            self.transport.shell(command, timeout_s=self.profile.call_timeout_s, check=True)
        return records

    def push_model(self, model: Path, sha256: str | None = None) -> PushRecord:
        digest = sha256 or sha256_file(model)
        remote = posixpath.join(self.root, "models", f"{digest}.gguf")
        return self.push_files({remote: model}, mode=0o644)[0]

    def cleanup(self, *, policy: CachePolicy | None = None, job_id: str | None = None) -> None:
        """Remove job directories (one job, or all), and per policy the models and binaries."""
        policy = policy or self.profile.cache_policy
        targets = [self._q("jobs", job_id) if job_id else self._q("jobs")]
        if policy in (CachePolicy.NONE, CachePolicy.RUNTIME):
            targets.append(self._q("models"))
        if policy is CachePolicy.NONE:
            targets.append(self._q("bin"))
        self.transport.shell(
            f"rm -rf {' '.join(targets)}; rmdir {self._q('jobs')} 2>/dev/null; true",
            timeout_s=self.profile.call_timeout_s * 4,
            check=True,
        )

    def reap_stale_jobs(self) -> RemoteResult:
        """Kill benchmark processes left by an earlier agent (the phone dropped mid-run, the
        agent died) and remove their directories, so they neither heat nor load the phone."""
        jobs = self._q("jobs")
        # wrappers first: a wrapper outliving its benchmark writes rc into the directory being
        # removed ("Directory not empty"); the second rm catches a write already under way
        return self.transport.shell(
            f"for f in {jobs}/*/*/wrapper.pid {jobs}/*/*/bench.pid; do "
            '[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done; '
            f"rm -rf {jobs} 2>/dev/null || {{ sleep 0.2; rm -rf {jobs}; }}; true",
            timeout_s=self.profile.call_timeout_s,
        )

    # -- thermal ----------------------------------------------------------------------
    def thermal(self) -> Thermal:
        return read_thermal(self.transport, timeout_s=self.profile.call_timeout_s)

    def wait_for_cooldown(self, *, stop: threading.Event | None = None) -> CoolDown:
        p = self.profile
        return wait_for_cooldown(
            self.transport,
            below_c=p.cool_down_below_c,
            timeout_s=p.cool_down_timeout_s,
            poll_s=p.cool_down_poll_s,
            zone_pattern=p.thermal_zone_pattern,
            call_timeout_s=p.call_timeout_s,
            stop=stop,
        )

    # -- benchmark ----------------------------------------------------------------------
    def launcher(self) -> Launcher:
        if self._launcher is None:
            self._launcher = Launcher.detect(self.transport, timeout_s=self.profile.call_timeout_s)
        return self._launcher

    def _lib_env(self) -> dict[str, str]:
        return {"LD_LIBRARY_PATH": posixpath.join(self.root, "bin")}

    def llama_bench_flags(self, sha256: str = "") -> LlamaBenchFlags:
        """Flag spellings of the llama-bench in bin/, from its ``--help`` on the phone (cached
        per binary sha256, so a newly pushed build is asked again)."""
        exe = posixpath.join(self.root, "bin", LLAMA_BENCH)
        if not sha256 or sha256 not in self._flags:
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self._lib_env().items())
            result = self.transport.shell(
                f"{env} {shlex.quote(exe)} --help", timeout_s=self.profile.call_timeout_s
            )
            try:
                flags = parse_help(result.stdout + result.stderr)
            except ValueError as exc:
                detail = (result.stderr.strip() or result.stdout.strip())[-300:]
                raise BenchSetupError(
                    f"{self.serial}: {exe} --help exited {result.returncode}: {detail}"
                ) from exc
            if not sha256:
                return flags
            self._flags[sha256] = flags
        return self._flags[sha256]

    def llama_bench_commit(self, sha256: str = "") -> str | None:
        """The llama.cpp commit the llama-bench in bin/ was built from (``--version``: "version:
        X (build N, commit C)"), cached per binary sha256; None for a build without
        ``--version``."""
        if sha256 and sha256 in self._commits:
            return self._commits[sha256]
        exe = posixpath.join(self.root, "bin", LLAMA_BENCH)
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self._lib_env().items())
        result = self.transport.shell(f"{env} {shlex.quote(exe)} --version",
                                      timeout_s=self.profile.call_timeout_s)  # fmt: skip
        match = _VERSION.search(result.stdout + result.stderr) if result.ok else None
        commit = match.group(1) if match else None
        if sha256:
            self._commits[sha256] = commit
        return commit

    def run_bench(
        self,
        model: Path,
        contexts: Sequence[int],
        settings: BenchSettings,
        *,
        runtime_files: Sequence[Path],
        job_id: str,
        timeout_s: float,
        job_deadline_s: float | None = None,
        build_flags: Sequence[str] = (),
        remeasure: RemeasurePolicy | None = None,
        expected_commit: str | None = None,
        required_cpu_features: Sequence[str] = (),
        cancel: threading.Event | None = None,
    ) -> BenchReport:
        """Measure ``model`` at each context: two detached processes per context (TTFT:
        ``-p C -n 0``; decode: ``-p 0 -n M -d C``), threads pinned by the profile, a cool-down
        wait before each process, temperatures before and after each context.

        Which contexts run and which are measured again is ``measure_policy``'s rule, the same
        as on x86: ``remeasure`` (default: one try) re-measures a noisy or hot figure after
        another cool-down; after an OOM (exit 137) or a timeout at C, larger contexts are not
        run (reported with the reason); smaller ones still are. ``timeout_s`` bounds each
        process (the agent derives it from the job), ``job_deadline_s`` (seconds from now) the
        whole call. ``expected_commit``: the llama.cpp commit the binary must report
        (``RuntimeCommitMismatch`` otherwise, before a second process runs);
        ``required_cpu_features``: /proc/cpuinfo "Features" the build needs (``CpuFeatureMissing``
        before anything runs, where the phone lists its features and lacks one). DeviceGone
        propagates: the agent requeues the job; ``cancel`` stops the run
        (``measure_policy.Cancelled``) and kills the process on the phone.
        """
        if not _JOB_ID.match(job_id):
            raise ValueError(f"job_id must match {_JOB_ID.pattern}: {job_id!r}")
        model = Path(model)
        validate_model(model, list(contexts), n_gen=settings.n_gen)
        started = time.monotonic()
        end = started + job_deadline_s if job_deadline_s else None

        self.transport.ensure_online()
        self._check_cpu_features(required_cpu_features)
        self.reap_stale_jobs()
        model_sha = sha256_file(model)
        try:
            runtime_records = self.push_runtime(runtime_files)
            pushed_model = self.push_model(model, model_sha)
            bench_sha = next(
                r.sha256 for r in runtime_records if r.remote.endswith("/" + LLAMA_BENCH)
            )
            flags = self.llama_bench_flags(bench_sha)
            if expected_commit is not None:
                built = self.llama_bench_commit(bench_sha)
                if built is not None and built != expected_commit:
                    raise RuntimeCommitMismatch(mismatch(self.serial, built, expected_commit))
            pinning = resolve_pinning(self.profile, self.transport)
            pinned = self.profile.settings_for(settings, pinning)
            runner = PhoneContextRunner(
                self, flags, pushed_model.remote, pinned, job_id, timeout_s=timeout_s, end=end,
                expected_commit=expected_commit, cancel=cancel,
            )  # fmt: skip
            result = measure_contexts(
                contexts, runner, remeasure or RemeasurePolicy(max_tries=1), cancel=cancel,
                deadline=end, log=lambda message: log.info("%s: %s", self.serial, message),
            )  # fmt: skip
        finally:
            try:
                self.cleanup(job_id=job_id)
            except AndroidError as exc:  # never mask the run's own outcome or error
                log.warning("%s: cleanup after job %s failed: %s", self.serial, job_id, exc)
        runtime = RuntimeSettings(
            llama_cpp_commit=result.commit or "unknown",
            build_flags=list(build_flags),
            threads=pinned.threads,
            cpu_mask=pinned.cpu_mask,
            flash_attn=pinned.flash_attn,
            cache_type_k=pinned.cache_type_k,
            cache_type_v=pinned.cache_type_v,
            n_gen=pinned.n_gen,
            repetitions=pinned.repetitions,
            cpu_model=self._soc_quietly(),
            mmap=pinned.mmap,
            warmup_below=pinned.warmup_below,
        )
        return BenchReport(
            model_sha256=model_sha,
            model_bytes=model.stat().st_size,
            runtime=runtime,
            contexts=result.measurements,
        )

    def _soc_quietly(self) -> str:
        try:
            return self.properties().soc
        except AndroidError:
            return ""

    def cpu_features(self) -> set[str] | None:
        """The CPU's features from /proc/cpuinfo ("Features : fp asimd ... asimddp"); None
        where the kernel lists none (or the file is hidden)."""
        result = self.transport.shell("grep -m1 -i '^Features' /proc/cpuinfo 2>/dev/null",
                                      timeout_s=self.profile.call_timeout_s)  # fmt: skip
        _, sep, flags = result.stdout.partition(":")
        return set(flags.split()) if sep and flags.strip() else None

    def _check_cpu_features(self, required: Sequence[str]) -> None:
        if not required:
            return
        have = self.cpu_features()
        missing = sorted(set(required) - have) if have is not None else []
        if missing:
            raise CpuFeatureMissing(
                f"{self.serial}: the CPU lacks {', '.join(missing)}, which the pushed llama-bench "
                "was built for (it would die with SIGILL): use the android-arm64-compat build "
                "(android.runtime_target in lab_config.yaml)"
            )

    def load_1m(self) -> float | None:
        """The phone's 1-minute load average (None where /proc/loadavg is not readable)."""
        result = self.transport.shell("cat /proc/loadavg 2>/dev/null",
                                      timeout_s=self.profile.call_timeout_s)  # fmt: skip
        try:
            return float(result.stdout.split()[0])
        except (IndexError, ValueError):
            return None

    def _run_one(
        self,
        argv: list[str],
        job_id: str,
        name: str,
        timeout_s: float,
        end: float | None,
        cancel: threading.Event | None = None,
    ) -> RunOutcome:
        limit = timeout_s
        if end is not None:
            limit = min(limit, end - time.monotonic())
            if limit <= 0:
                return RunOutcome(tuple(argv), -9, "", "job deadline passed before start",
                                  None, 0.0, timed_out=True)
        run = DetachedRun(
            self.transport, self.launcher(), argv,
            posixpath.join(self.root, "jobs", job_id, name),
            env=self._lib_env(), call_timeout_s=self.profile.call_timeout_s,
        )
        run.start()
        outcome = run.wait(timeout_s=limit, poll_s=self.profile.poll_interval_s, cancel=cancel)
        log.info(
            "%s %s: rc=%s peak=%s wall=%.1fs%s", self.serial, name, outcome.returncode,
            outcome.peak_rss_bytes, outcome.wall_s, " (killed at deadline)"
            if outcome.timed_out else "",
        )
        return outcome


def _link_within(path: Path, files: Sequence[Path]) -> str | None:
    """The name ``path`` links to if it is a symlink to another file of ``files`` (resolved
    through any chain of links), else None (a regular file, or a link out of the set)."""
    if not path.is_symlink():
        return None
    target = path.resolve()
    for other in files:
        if other != path and not other.is_symlink() and other.resolve() == target:
            return other.name
    return None


def _count_cpus(possible: str) -> int | None:
    """``/sys/devices/system/cpu/possible`` ("0-7" or "0,2-3") -> number of CPUs."""
    total = 0
    for part in possible.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            return None
        total += (int(high) - int(low) + 1) if high else 1
    return total or None


__all__ = ["AndroidDevice", "Pinning", "PushRecord"]

"""The emulated phone's file system and process space: a sandbox directory run under bubblewrap.

Layout of the sandbox directory (host side) and where each part appears "on the phone":

    data/     -> /data      (with /data/local/tmp, where agents push binaries and models)
    sdcard/   -> /sdcard
    system/   -> /system    (read-only: bin/getprop, bin/dumpsys answer from the test's tables;
                             bin/sh is the host's /bin/sh)
    thermal/  -> /sys/class/thermal  (thermal_zoneN/{type,temp}, millidegrees)
    cpu/      -> /sys/devices/system/cpu  (online/possible/present and per-CPU
                 cpufreq/cpuinfo_max_freq and cpu_capacity: heterogeneous cores, as a Snapdragon
                 presents them; by default as many as the host has, so pinning is real)
    tmp/      -> /tmp
    meminfo   -> /proc/meminfo, only once a test sets it; otherwise the host's
    cpuinfo   -> /proc/cpuinfo: an arm64 phone's ("Features : fp asimd ... asimddp"); an older
                 phone (``cpu_features`` without asimddp) also runs qemu as that CPU (``qemu_cpu``)

Everything else is the host's root, bound read-only; /proc is the host's, so /proc/<pid>/status of
a benchmark started "on the phone" is real. Shell commands run as ``sh -c CMD`` (the host's /bin/sh
stands for toybox sh). Every process started for a phone carries ``STAR_EMULATED_PHONE=<id>`` in
its environment, which is how ``kill_all`` finds detached ones (``nohup``/``setsid``) that outlive
the shell service that started them, exactly as they would on a phone.

The phone runs aarch64 executables: every process preloads the user-space binfmt shim of
``qemu_binfmt`` (no binfmt_misc here), which executes an aarch64 ELF through ``qemu-aarch64``
in the same process. So the real phone build of llama-bench, pushed by the agent, runs on the
"phone" (its timings are meaningless; its protocol, output, exit codes and memory are real).

If bubblewrap cannot run, the sandbox falls back to *rewrite mode*: commands run on the host with
device paths in the command line (and in pushed ``#!`` scripts) rewritten to the sandbox. That is
a weaker emulation (paths computed at run time are not rewritten) and is reported by ``mode``.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from tests.support.qemu_binfmt import binfmt_library, qemu_aarch64

_GETPROP = r"""#!/bin/sh
# Emulated getprop: answers from /system/etc/emulated/props (one "key=value" per line).
props=/system/etc/emulated/props
if [ "$#" -eq 0 ]; then
  while IFS= read -r line; do
    printf '[%s]: [%s]\n' "${line%%=*}" "${line#*=}"
  done < "$props"
  exit 0
fi
while IFS= read -r line; do
  if [ "${line%%=*}" = "$1" ]; then
    printf '%s\n' "${line#*=}"
    exit 0
  fi
done < "$props"
printf '%s\n' "${2-}"
"""

_DUMPSYS = r"""#!/bin/sh
# Emulated dumpsys: prints /system/etc/emulated/dumpsys/<service> when a test has set it.
f="/system/etc/emulated/dumpsys/$1"
if [ -n "$1" ] && [ -f "$f" ]; then
  cat "$f"
  exit 0
fi
echo "Can't find service: $1" >&2
exit 0
"""

DEFAULT_PATH = "/system/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BINFMT_LIB = "/system/lib64/libstar_binfmt.so"  # where the phone sees the shim (bwrap mode)
# A Snapdragon 8 Gen 2-like 1 + 4 + 3 layout: (cpuinfo_max_freq kHz, cpu_capacity)
SNAPDRAGON_8_GEN_2 = ((2016000, 325),) * 3 + ((2803200, 870),) * 4 + ((3187200, 1024),)


# /proc/cpuinfo features of a Cortex-A78-class core (dot product: asimddp) and of a Cortex-A53
MODERN_FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                   "asimdrdm lrcpc dcpop asimddp")  # fmt: skip
A53_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"


def host_like_cores() -> tuple[tuple[int, int], ...]:
    """As many cores as the host has (so a ``-C`` mask pins to real CPUs): the first half
    little (1.8 GHz), the rest big (3.2 GHz); a 1-CPU host gets one big core."""
    count = max(1, len(os.sched_getaffinity(0)))
    little = count // 2
    return ((1804800, 410),) * little + ((3187200, 1024),) * (count - little)

_OWN_TOP = {"data", "sdcard", "system", "tmp", "proc", "dev", "sys"}


def bwrap_works() -> bool:
    """True if bubblewrap can build a mount namespace here (it needs root or user namespaces)."""
    exe = shutil.which("bwrap")
    if not exe:
        return False
    try:
        done = subprocess.run(
            [exe, "--ro-bind", "/", "/", "--dev", "/dev", "/bin/sh", "-c", "echo ok"],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == b"ok"


class Sandbox:
    """Directory tree + process launcher for one emulated phone."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        mode: str = "auto",
        hide_time: bool = False,
        hide_paths: tuple[str, ...] = (),
        cores: Sequence[tuple[int, int]] | None = None,
        cpu_features: str = MODERN_FEATURES,
        qemu_cpu: str | None = None,
    ) -> None:
        if mode == "auto":
            mode = "bwrap" if bwrap_works() else "rewrite"
        if mode not in ("bwrap", "rewrite"):
            raise ValueError(f"mode must be auto, bwrap or rewrite, not {mode!r}")
        self.id = uuid.uuid4().hex
        self._own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="emulated-phone-"))
        self.mode = mode
        self.hide_time = hide_time  # make `time -v` unusable, to exercise the VmHWM fallback
        # host directories the phone must not see (e.g. a llama.cpp build dir that a binary's
        # RUNPATH points to, so that only the libraries pushed to the phone can be loaded)
        self.hide_paths = tuple(hide_paths)
        self.cores = tuple(cores) if cores is not None else host_like_cores()
        self.cpu_features = cpu_features
        self.qemu_cpu = qemu_cpu  # e.g. "cortex-a53": aarch64 code runs as that CPU would
        self.qemu = qemu_aarch64()
        self.binfmt = binfmt_library()
        self.meminfo_set = False
        try:
            self._lay_out()
        except BaseException:
            self.remove()
            raise

    def _lay_out(self) -> None:
        for sub in ("data/local/tmp", "sdcard", "system/bin", "system/etc/emulated/dumpsys"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("thermal", "tmp"):
            (self.root / sub).mkdir(exist_ok=True)
        self._lay_out_cpus()
        self._write(self.root / "cpuinfo", "".join(
            f"processor\t: {i}\nBogoMIPS\t: 38.40\nFeatures\t: {self.cpu_features}\n"
            f"CPU implementer\t: 0x41\nCPU architecture: 8\n\n" for i in range(len(self.cores))
        ))  # fmt: skip
        if self.binfmt is not None:
            (self.root / "system/lib64").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.binfmt, self.root / "system/lib64/libstar_binfmt.so")
        for name, script in (("getprop", _GETPROP), ("dumpsys", _DUMPSYS)):
            if self.mode == "rewrite":  # their table paths must point into the sandbox too
                script = self.rewrite(script)
            self._write(self.root / "system/bin" / name, script, mode=0o755)
        self._write(self.root / "system/etc/emulated/props", "")
        (self.root / "system/bin/sh").symlink_to("/bin/sh")  # scripts may say #!/system/bin/sh

    def _lay_out_cpus(self) -> None:
        base = self.root / "cpu"
        base.mkdir(exist_ok=True)
        span = f"0-{len(self.cores) - 1}\n" if len(self.cores) > 1 else "0\n"
        for name in ("online", "possible", "present"):
            self._write(base / name, span)
        for index, (khz, capacity) in enumerate(self.cores):
            self._write(base / f"cpu{index}/cpufreq/cpuinfo_max_freq", f"{khz}\n")
            self._write(base / f"cpu{index}/cpu_capacity", f"{capacity}\n")
            self._write(base / f"cpu{index}/online", "1\n")

    # -- the test's tables -------------------------------------------------------------------
    @staticmethod
    def _write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
        """Replace a file atomically, so a concurrent reader never sees it half written."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_bytes(text.encode() if isinstance(text, str) else text)
        tmp.chmod(mode)
        os.replace(tmp, path)

    def set_props(self, props: dict[str, str]) -> None:
        lines = "".join(f"{key}={value}\n" for key, value in props.items())
        self._write(self.root / "system/etc/emulated/props", lines)

    def set_meminfo(self, text: str) -> None:
        self._write(self.root / "meminfo", text)
        self.meminfo_set = True

    def set_dumpsys(self, service: str, text: str | None) -> None:
        path = self.root / "system/etc/emulated/dumpsys" / service
        if text is None:
            path.unlink(missing_ok=True)
        else:
            self._write(path, text)

    def set_thermal_zones(self, zones: list[tuple[str, float]]) -> None:
        """Zones in order (type, degrees C); written as thermal_zoneN/{type,temp} (millidegrees).

        Existing zones are updated in place (temp file replaced atomically); surplus ones removed.
        """
        base = self.root / "thermal"
        for index, (kind, celsius) in enumerate(zones):
            zone = base / f"thermal_zone{index}"
            zone.mkdir(exist_ok=True)
            self._write(zone / "type", f"{kind}\n")
            self._write(zone / "temp", f"{round(celsius * 1000)}\n")
        for extra in base.glob("thermal_zone*"):
            suffix = extra.name.removeprefix("thermal_zone")
            if suffix.isdigit() and int(suffix) >= len(zones):
                shutil.rmtree(extra, ignore_errors=True)

    # -- paths ----------------------------------------------------------------------
    def host_path(self, device_path: str) -> tuple[Path, bool]:
        """Map an absolute device path to (host path, writable)."""
        path = posixpath.normpath("/" + device_path.lstrip("/"))
        for prefix, sub, writable in (
            ("/data", "data", True),
            ("/sdcard", "sdcard", True),
            ("/tmp", "tmp", True),
            ("/system", "system", False),
            ("/sys/class/thermal", "thermal", False),
            ("/sys/devices/system/cpu", "cpu", False),
        ):
            if path == prefix or path.startswith(prefix + "/"):
                rest = path[len(prefix) :].lstrip("/")
                return (self.root / sub / rest if rest else self.root / sub), writable
        if path == "/proc/meminfo" and self.meminfo_set:
            return self.root / "meminfo", False
        if path == "/proc/cpuinfo":
            return self.root / "cpuinfo", False
        return Path(path), False

    def rewrite(self, text: str) -> str:
        """Rewrite mode only: device paths in a command line -> sandbox paths."""
        for prefix, sub in (
            ("/data/", "data/"),
            ("/sdcard/", "sdcard/"),
            ("/system/", "system/"),
            ("/sys/class/thermal/", "thermal/"),
            ("/sys/devices/system/cpu/", "cpu/"),
        ):
            text = text.replace(prefix, f"{self.root}/{sub}")
        if self.meminfo_set:
            text = text.replace("/proc/meminfo", f"{self.root}/meminfo")
        return text.replace("/proc/cpuinfo", f"{self.root}/cpuinfo")

    # -- processes ----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        path = DEFAULT_PATH
        if self.mode == "rewrite":
            path = f"{self.root}/system/bin:" + DEFAULT_PATH.split(":", 1)[1]
        return {
            "PATH": path,
            "HOME": "/" if self.mode == "bwrap" else str(self.root / "data/local/tmp"),
            "TMPDIR": "/data/local/tmp" if self.mode == "bwrap" else str(self.root / "tmp"),
            "ANDROID_DATA": "/data",
            "ANDROID_ROOT": "/system",
            "EXTERNAL_STORAGE": "/sdcard",
            "SHELL": "/bin/sh",
            "LANG": "C.UTF-8",
            "STAR_EMULATED_PHONE": self.id,
            **({"STAR_EMU_QEMU": self.qemu} if self.qemu else {}),
            **({"STAR_EMU_QEMU_CPU": self.qemu_cpu} if self.qemu_cpu else {}),
            # bwrap mode sets LD_PRELOAD inside the sandbox (--setenv): bwrap itself must not
            # try to preload a path that exists only there
            **({"LD_PRELOAD": str(self.root / "system/lib64/libstar_binfmt.so")}
               if self.binfmt is not None and self.mode == "rewrite" else {}),
        }

    def _bwrap_args(self) -> list[str]:
        args = ["bwrap"]
        for entry in sorted(os.listdir("/")):
            if entry in _OWN_TOP:
                continue
            host = "/" + entry
            if os.path.islink(host):
                args += ["--symlink", os.readlink(host), host]
            elif os.path.isdir(host) or os.path.isfile(host):
                args += ["--ro-bind", host, host]
        args += ["--dev", "/dev", "--ro-bind", "/proc", "/proc", "--ro-bind", "/sys", "/sys"]
        args += ["--tmpfs", "/sys/class"]
        args += ["--ro-bind", str(self.root / "thermal"), "/sys/class/thermal"]
        args += ["--ro-bind", str(self.root / "cpu"), "/sys/devices/system/cpu"]
        args += ["--bind", str(self.root / "data"), "/data"]
        args += ["--bind", str(self.root / "sdcard"), "/sdcard"]
        args += ["--ro-bind", str(self.root / "system"), "/system"]
        args += ["--bind", str(self.root / "tmp"), "/tmp"]
        if self.meminfo_set:
            args += ["--ro-bind", str(self.root / "meminfo"), "/proc/meminfo"]
        args += ["--ro-bind", str(self.root / "cpuinfo"), "/proc/cpuinfo"]
        if self.hide_time:
            for exe in ("/usr/bin/time", "/bin/time"):
                if os.path.isfile(exe) and not os.path.islink(exe):
                    args += ["--ro-bind", "/dev/null", exe]
        for hidden in self.hide_paths:
            if os.path.isdir(hidden):
                args += ["--tmpfs", hidden]
        if self.binfmt is not None:
            args += ["--setenv", "LD_PRELOAD", BINFMT_LIB]
        args += ["--chdir", "/"]
        return args

    def spawn(self, command: str | None, *, merge_stderr: bool) -> subprocess.Popen[bytes]:
        """Start ``sh -c command`` (or an interactive-less ``sh`` reading stdin) on the phone."""
        sh = ["/bin/sh"] if command is None else ["/bin/sh", "-c", command]
        if self.mode == "bwrap":
            argv = self._bwrap_args() + sh
            cwd = None
        else:
            if command is not None:
                argv = ["/bin/sh", "-c", self.rewrite(command)]
            else:
                argv = sh
            cwd = str(self.root)
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            env=self.env(),
            cwd=cwd,
            start_new_session=True,  # adbd's subprocess calls setsid() too
        )

    def processes(self) -> list[int]:
        """PIDs of every live process started for this phone (detached ones included)."""
        marker = f"STAR_EMULATED_PHONE={self.id}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    environ = handle.read()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                found.append(int(entry))
        return found

    def kill_all(self) -> None:
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        self.kill_all()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

"""A stand-in ``llama-bench`` (a POSIX sh script) with a scripted behaviour, for agent tests
that must not depend on a llama.cpp build: deadlines, OOM kills, dropped phones.

It answers ``--help`` like a recent llama-bench and, per ``mode``:
- "ok": prints ``-o json`` output whose samples follow ``expected_samples_ns`` (so a test can
  check the agent's figures against what the "benchmark" wrote);
- "sleep": sleeps ``sleep_s`` (``exec sleep``, same pid) before answering, for deadlines and
  disconnects;
- "oom": kills itself with SIGKILL, as Android's low-memory killer would (exit 137).

``noise_pct``: the spread of successive benchmark runs (one entry per process, in the order they
run; then 0): sample i of a run is ``base * (1 + pct * i / 100)``, so a run with a large entry
is "noisy" (stddev/median well above 0.1) and a later run with 0 is not. The run count is kept
in ``.runs`` next to the script, so it holds across processes (and on the emulated phone).
``commit``: the ``build_commit`` it reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

HELP = """\
usage: llama-bench [options]

options:
  -h, --help
  --version                                 show version and build info
  --numa <distribute|isolate|numactl>       numa mode (default: disabled)
  -r, --repetitions <n>                     number of times to repeat each test (default: 5)
  --prio <-1|0|1|2|3>                       process/thread priority (default: 0)
  --delay <0...N> (seconds)                 delay between each test (default: 0)
  -o, --output <csv|json|jsonl|md|sql>      output format printed to stdout (default: md)
  -oe, --output-err <csv|json|jsonl|md|sql> output format printed to stderr (default: none)
  --no-warmup                               skip the warmup runs before benchmarking
  -v, --verbose                             verbose output

test parameters:
  -m, --model <filename>                    (default: models/7B/ggml-model-q4_0.gguf)
  -p, --n-prompt <n>                        (default: 512)
  -n, --n-gen <n>                           (default: 128)
  -pg <pp,tg>                               (default: )
  -d, --n-depth <n>                         (default: 0)
  -b, --batch-size <n>                      (default: 2048)
  -ctk, --cache-type-k <t>                  (default: f16)
  -ctv, --cache-type-v <t>                  (default: f16)
  -t, --threads <n>                         (default: 2)
  -C, --cpu-mask <hex,hex>                  (default: 0x0)
  --cpu-strict <0|1>                        (default: 0)
  -ngl, --n-gpu-layers <n>                  (default: 99)
  -fa, --flash-attn <on|off|auto>           (default: auto)
  -lm, --load-mode <none|mmap|direct-io>    (default: mmap)
"""

_SCRIPT = r"""#!/bin/sh
# fake llama-bench ({mode})
p=512; n=128; d=0; r=5; t=2; mask=0x0
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h|--help) cat <<'HELP_EOF'
{help}HELP_EOF
      exit 0;;
    --version) echo "version: 0.0.0-fake (build 1, commit {commit})" >&2
      echo "built with sh for a fake" >&2
      exit 0;;
    -p) p=$2; shift;;
    -n) n=$2; shift;;
    -d) d=$2; shift;;
    -r) r=$2; shift;;
    -t) t=$2; shift;;
    -C) mask=$2; shift;;
    -m|-o|-ctk|-ctv|-fa|-lm|-mmp) shift;;
  esac
  shift
done
mode={mode}
here=$(dirname "$0")
runs=$(cat "$here/.runs" 2>/dev/null || echo 0)
echo $((runs + 1)) > "$here/.runs"
pct=0
k=0
for x in {noise}; do
  if [ "$k" -eq "$runs" ]; then pct=$x; fi
  k=$((k + 1))
done
if [ "$mode" = sleep ]; then exec sleep {sleep_s}; fi
if [ "$mode" = oom ]; then kill -9 $$; fi
if [ "{delay_s}" != 0 ]; then sleep {delay_s}; fi
samples=""
i=0
while [ "$i" -lt "$r" ]; do
  if [ "$n" -eq 0 ]; then
    v=$(( p * 1000000 + i * 1000 ))
  else
    v=$(( n * 2000000 + d * 100 + i * 1000 ))
  fi
  v=$(( v + v * pct * i / 100 ))
  samples="$samples${{samples:+, }}$v"
  i=$((i + 1))
done
cat <<JSON_EOF
[
  {{
    "build_commit": "{commit}",
    "build_number": 1,
    "cpu_mask": "$mask",
    "n_threads": $t,
    "type_k": "f16",
    "type_v": "f16",
    "flash_attn": false,
    "n_prompt": $p,
    "n_gen": $n,
    "n_depth": $d,
    "samples_ns": [ $samples ]
  }}
]
JSON_EOF
"""


def expected_samples_ns(
    *, n_prompt: int, n_gen: int, n_depth: int, repetitions: int, noise_pct: int = 0
) -> list[int]:
    """The samples the "ok" fake prints for one test (``noise_pct``: that run's spread)."""
    if n_gen == 0:
        base = [n_prompt * 1_000_000 + i * 1000 for i in range(repetitions)]
    else:
        base = [n_gen * 2_000_000 + n_depth * 100 + i * 1000 for i in range(repetitions)]
    return [v + v * noise_pct * i // 100 for i, v in enumerate(base)]


def write_fake_llama_bench(
    directory: Path,
    *,
    mode: str = "ok",
    sleep_s: float = 60,
    delay_s: float = 0,
    noise_pct: Sequence[int] = (),
    commit: str = "fake0001",
) -> Path:
    """Write ``directory/llama-bench`` (executable) and return its path. ``delay_s``: "ok"
    mode waits that long (in a child ``sleep``, keeping its own pid alive) before printing."""
    if mode not in ("ok", "sleep", "oom"):
        raise ValueError(f"mode must be ok, sleep or oom, not {mode!r}")
    if any(not isinstance(x, int) or x < 0 for x in noise_pct):
        raise ValueError("noise_pct must be non-negative integers")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".runs").unlink(missing_ok=True)
    path = directory / "llama-bench"
    noise = " ".join(str(x) for x in noise_pct) or "0"
    path.write_text(_SCRIPT.format(mode=mode, help=HELP, sleep_s=sleep_s, delay_s=delay_s,
                                   noise=noise, commit=commit))
    path.chmod(0o755)
    return path

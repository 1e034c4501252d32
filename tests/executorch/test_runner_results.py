"""Reading star-et-bench's output into measurements (pure: process outcomes as records)."""

from __future__ import annotations

import json

import pytest

from device_agents.executorch import assemble_context, build_commands, parse_runner_json
from device_agents.executorch.commands import PteBenchSettings, profile_paths
from device_agents.executorch.results import RunnerParseError, parse_info
from device_agents.llamacpp.results import RunOutcome


def run_json(mode: str, context: int, samples: list[int], n_gen: int = 0) -> str:
    return json.dumps({
        "runner": "star-et-bench", "format": 1, "executorch_version": "1.5.1+cpu (3b60)",
        "mode": mode, "context": context, "n_gen": n_gen, "samples_ns": samples,
        "prefill_chunk": 128, "load_ms": 3.0,
    })  # fmt: skip


def outcome(stdout: str = "", code: int = 0, stderr: str = "", rss: int | None = 50 << 20
            ) -> RunOutcome:
    return RunOutcome(argv=("star-et-bench",), returncode=code, stdout=stdout, stderr=stderr,
                      peak_rss_bytes=rss, wall_s=1.0)


def test_assemble_gives_ms_per_token_and_the_prefill_rss() -> None:
    ttft = outcome("log line\n" + run_json("ttft", 512, [2_000_000, 4_000_000, 3_000_000]))
    decode = outcome(run_json("decode", 512, [32_000_000, 64_000_000], n_gen=32), rss=99 << 20)
    m, parsed = assemble_context(512, ttft, decode)
    assert m.ttft_ms is not None and m.ttft_ms.median == 3.0
    assert m.decode_ms_per_token is not None and m.decode_ms_per_token.median == 1.5
    assert m.peak_rss_bytes == 50 << 20  # the prefill process's, not the decode snapshot's
    assert parsed is not None and parsed.executorch_version.startswith("1.5.1")


def test_sigkill_is_out_of_memory_and_other_failures_are_errors() -> None:
    killed, _ = assemble_context(512, outcome(code=-9), None)
    assert killed.oom and killed.error is None
    alloc, _ = assemble_context(
        512, outcome(code=1, stderr="error: cannot allocate 9 bytes (out of memory)"), None
    )
    assert alloc.oom
    other, _ = assemble_context(512, outcome(code=1, stderr="error: decode failed"), None)
    assert not other.oom and other.error is not None and "decode failed" in other.error


def test_a_run_for_another_context_is_an_error() -> None:
    m, _ = assemble_context(512, outcome(run_json("ttft", 256, [1])),
                            outcome(run_json("decode", 512, [1], n_gen=1)))
    assert m.error is not None and "another run than context" in m.error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no JSON"),
        ('{"runner": "llama-bench", "format": 1}', "rebuild the runner"),
        ('{"runner": "star-et-bench", "format": 1, "mode": "ttft", "context": 1, '
         '"samples_ns": []}', "samples_ns is empty"),
        ('{"runner": "star-et-bench", "format": 1}', "lacks mode, context, samples_ns"),
    ],
)
def test_parse_refuses_bad_output(text: str, message: str) -> None:
    with pytest.raises(RunnerParseError, match=message):
        parse_runner_json(text)


def test_info_reads_max_context() -> None:
    info = parse_info('{"runner": "star-et-bench", "format": 1, "executorch_version": "1.5.1", '
                      '"max_context": 4096, "prefill_chunk": 128, "vocab_size": 65536}')
    assert (info.max_context, info.prefill_chunk, info.vocab_size) == (4096, 128, 65536)


def test_commands_pin_every_setting_and_name_profiles() -> None:
    settings = PteBenchSettings(threads=3, n_gen=16, repetitions=4, warmup=2, cpu_mask="0xf")
    ttft, decode = build_commands("/bin/r", "/m/a.pte", 512, settings, profile_dir="/p")
    assert ttft[:3] == ["/bin/r", "/m/a.pte", "ttft"] and decode[2] == "decode"
    for flag, value in (("--context", "512"), ("--threads", "3"), ("--reps", "4"),
                        ("--warmup", "2"), ("--cpu-mask", "0xf")):
        assert ttft[ttft.index(flag) + 1] == value and decode[decode.index(flag) + 1] == value
    assert decode[decode.index("--n-gen") + 1] == "16" and "--n-gen" not in ttft
    assert ttft[-1] == str(profile_paths("/p", "/m/a.pte", 512)[0])
    assert decode[-1] == str(profile_paths("/p", "/m/a.pte", 512)[1])


def test_device_agents_executorch_imports_no_heavy_module() -> None:
    """Agent hosts have the runner and the wheel's libraries, not torch or the executorch
    Python package: the wrapper must not import them."""
    import subprocess
    import sys

    code = (
        "import sys, device_agents.executorch\n"
        "heavy = ('torch', 'numpy', 'executorch', 'torchao', 'sqlalchemy', 'gguf', 'star')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"

"""Pure parts of the measurement: flag detection, commands, JSON parsing, failure classes, GGUF
header. No llama.cpp needed."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from device_agents.llamacpp.commands import (
    BenchInputError,
    BenchSettings,
    build_commands,
    validate_model,
)
from device_agents.llamacpp.flags import UnsupportedFlagError, parse_help
from device_agents.llamacpp.gguf_header import GGUFError, read_gguf_header
from device_agents.llamacpp.results import (
    BenchParseError,
    RunOutcome,
    assemble_context,
    classify_failure,
    parse_llama_bench_json,
    stat_ms,
)

OLD_HELP = """usage: llama-bench [options]
options:
  -h, --help
  -r, --repetitions <n>                     (default: 5)
test parameters:
  -m, --model <filename>                    (default: models/7B/ggml-model-q4_0.gguf)
  -p, --n-prompt <n>                        (default: 512)
  -n, --n-gen <n>                           (default: 128)
  -ctk, --cache-type-k <t>                  (default: f16)
  -ctv, --cache-type-v <t>                  (default: f16)
  -t, --threads <n>                         (default: 8)
  -mmp, --mmap <0|1>                        (default: 1)
  -fa, --flash-attn <0|1>                   (default: 0)
"""


def test_old_help_spellings() -> None:
    flags = parse_help(OLD_HELP)
    assert flags.flash_attn_args(True) == ["-fa", "1"]
    assert flags.mmap_args(False) == ["-mmp", "0"]
    assert flags.cache_type_args("f16", "q8_0") == ["-ctk", "f16", "-ctv", "q8_0"]
    with pytest.raises(UnsupportedFlagError, match="-d"):
        flags.depth_args(4096)
    with pytest.raises(UnsupportedFlagError, match="CPU mask"):
        flags.cpu_mask_args("0xf0")
    assert flags.cpu_mask_args(None) == []


def test_help_of_something_else_is_refused() -> None:
    with pytest.raises(ValueError, match="llama-bench"):
        parse_help("usage: ls [OPTION]... [FILE]...\n  -a, --all   do not ignore entries\n")


def _flags():
    help_text = OLD_HELP + (
        "  -d, --n-depth <n>                         (default: 0)\n"
        "  -C, --cpu-mask <hex,hex>                  (default: 0x0)\n"
    )
    return parse_help(help_text)


def test_commands_pin_every_setting() -> None:
    settings = BenchSettings(threads=4, n_gen=16, repetitions=3, flash_attn=False,
                             cache_type_k="q8_0", cache_type_v="f16", cpu_mask="0xf0")
    ttft, decode = build_commands(_flags(), "/data/m.gguf", 4096, settings, llama_bench="/x/lb")
    for cmd in (ttft, decode):
        joined = " ".join(cmd)
        assert cmd[0] == "/x/lb"
        for piece in ("-m /data/m.gguf", "-o json", "-r 3", "-t 4", "-fa 0", "-ctk q8_0",
                      "-ctv f16", "-mmp 0", "-C 0xf0"):
            assert piece in joined, piece
    assert ttft[-4:] == ["-p", "4096", "-n", "0"]
    assert decode[-6:] == ["-p", "0", "-n", "16", "-d", "4096"]


def test_long_prompts_skip_the_warm_up_prefill_where_the_binary_can() -> None:
    new = parse_help(OLD_HELP + "  -d, --n-depth <n>    (default: 0)\n"
                                "  --no-warmup          skip warmup runs before benchmarking\n")
    settings = BenchSettings(threads=2, warmup_below=16384)
    short, _ = build_commands(new, "m.gguf", 4096, settings)
    long_ttft, long_decode = build_commands(new, "m.gguf", 32768, settings)
    assert "--no-warmup" not in short and "--no-warmup" in long_ttft
    assert "--no-warmup" not in long_decode  # its warm-up is one token, not the depth
    always, _ = build_commands(new, "m.gguf", 32768, BenchSettings(threads=2, warmup_below=None))
    assert "--no-warmup" not in always
    old, _ = build_commands(_flags(), "m.gguf", 32768, settings)  # a build without the flag
    assert "--no-warmup" not in old


def test_settings_validation() -> None:
    with pytest.raises(BenchInputError):
        BenchSettings(threads=0)
    with pytest.raises(BenchInputError, match="cache_type_k"):
        BenchSettings(threads=1, cache_type_k="f8")


def _entry(**over):
    entry = {
        "build_commit": "0c1e57098", "build_number": 0, "n_threads": 2, "type_k": "f16",
        "type_v": "f16", "flash_attn": "off", "n_prompt": 256, "n_gen": 0, "n_depth": 0,
        "avg_ns": 2_000_000, "stddev_ns": 100, "samples_ns": [2_000_000, 2_200_000, 1_900_000],
        "samples_ts": [128.0, 116.4, 134.7],
    }
    entry.update(over)
    return entry


def test_parse_json_by_field_name() -> None:
    text = json.dumps([_entry(), _entry(n_prompt=0, n_gen=32, n_depth=256,
                                        samples_ns=[64_000_000, 96_000_000])], indent=2)
    pp, tg = parse_llama_bench_json(text)
    assert (pp.n_prompt, pp.n_gen, pp.n_depth, pp.build_commit) == (256, 0, 0, "0c1e57098")
    assert tg.samples_ns == (64_000_000, 96_000_000)
    # JSON lines too
    assert parse_llama_bench_json("\n".join(json.dumps(e) for e in [_entry()]))[0].n_prompt == 256


@pytest.mark.parametrize("text", ["", "garbage", "[]", json.dumps([{"n_prompt": 1}])])
def test_parse_json_rejects(text: str) -> None:
    with pytest.raises(BenchParseError):
        parse_llama_bench_json(text)


def test_stat_ms() -> None:
    stat = stat_ms([64_000_000, 96_000_000], per=32)
    assert stat.samples == [2.0, 3.0]
    assert stat.median == 2.5 and stat.stddev == pytest.approx(0.7071, rel=1e-3)
    assert stat_ms([1_000_000]).stddev == 0.0


def _outcome(code=0, stdout="", stderr="", rss=50_000_000, timed_out=False) -> RunOutcome:
    return RunOutcome(argv=("lb",), returncode=code, stdout=stdout, stderr=stderr,
                      peak_rss_bytes=rss, wall_s=1.0, timed_out=timed_out)


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        (_outcome(), None),
        (_outcome(code=-9), "oom"),
        (_outcome(code=137), "oom"),
        (_outcome(code=1, stderr="ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate "
                                 "buffer of size 1073741824\nmain: error: failed to create "
                                 "context with model 'm.gguf'"), "oom"),
        (_outcome(code=-6, stderr="terminate called after throwing an instance of "
                                  "'std::bad_alloc'"), "oom"),
        (_outcome(code=1, stderr="main: error: failed to load model 'm.gguf'"), "error"),
        (_outcome(code=-11), "error"),
        (_outcome(code=-9, timed_out=True), "error"),
    ],
)
def test_classify_failure(outcome: RunOutcome, kind: str | None) -> None:
    result = classify_failure(outcome)
    assert (result[0] if result else None) == kind


def test_assemble_context() -> None:
    pp = _outcome(stdout=json.dumps([_entry()]), rss=40_000_000)
    tg = _outcome(stdout=json.dumps([_entry(n_prompt=0, n_gen=32, n_depth=256,
                                            samples_ns=[64_000_000, 64_000_000])]),
                  rss=45_000_000)
    measurement, parsed = assemble_context(256, pp, tg)
    assert measurement.ttft_ms is not None and measurement.ttft_ms.median == 2.0
    assert measurement.decode_ms_per_token is not None
    assert measurement.decode_ms_per_token.median == 2.0
    assert measurement.peak_rss_bytes == 40_000_000  # the prefill process's (see docstring)
    assert parsed is not None and parsed.build_commit == "0c1e57098"

    oom, _ = assemble_context(256, _outcome(code=-9), None)
    assert oom.oom and oom.error is None and oom.ttft_ms is None
    err, _ = assemble_context(256, pp, _outcome(code=1, stderr="boom"))
    assert not err.oom and err.error is not None and "decode" in err.error and "boom" in err.error
    wrong, _ = assemble_context(512, pp, tg)  # the JSON is for another context
    assert wrong.error is not None and "pp512" in wrong.error


def test_gguf_header_reader_matches_gguf_package(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "lfm2")
    writer.add_context_length(32768)
    writer.add_block_count(3)
    writer.add_array("lfm2.attention.head_count_kv", [0, 8, 0])
    writer.add_token_list([f"tok{i}" for i in range(5000)])  # a long string array: skipped
    writer.add_array("big.numeric", list(range(10_000)))  # a long numeric array: skipped
    writer.add_string("general.name", "after the arrays")
    writer.add_tensor("x", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    header = read_gguf_header(path)
    assert header.architecture == "lfm2" and header.context_length == 32768
    assert header.metadata["lfm2.attention.head_count_kv"] == [0, 8, 0]
    assert header.metadata["tokenizer.ggml.tokens"] is None
    assert header.metadata["general.name"] == "after the arrays"
    assert header.tensor_count == 1
    reference = gguf.GGUFReader(str(path))
    assert reference.fields["lfm2.context_length"].contents() == 32768


def test_gguf_header_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOTAGGUF" * 8)
    with pytest.raises(GGUFError, match="not a GGUF"):
        read_gguf_header(bad)
    truncated = tmp_path / "trunc.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00\x01")
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf_header(truncated)


def test_validate_model(tmp_path: Path) -> None:
    with pytest.raises(BenchInputError, match="not found"):
        validate_model(tmp_path / "missing.gguf", [128])
    text = tmp_path / "model.txt"
    text.write_text("hello")
    with pytest.raises(BenchInputError, match="not a GGUF"):
        validate_model(text, [128])
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(1024)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert validate_model(path, [512, 1024]).context_length == 1024
    with pytest.raises(BenchInputError, match="exceeds the model's context_length 1024"):
        validate_model(path, [512, 1000], n_gen=32)
    with pytest.raises(BenchInputError, match="only once"):
        validate_model(path, [512, 512])

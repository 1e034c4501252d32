"""The one measurement rule (``device_agents.measure_policy``) on this machine: real benchmark
processes (the scripted llama-bench of tests/support, whose spread is chosen per run), real
process deadlines, and the pure selection rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from device_agents.llamacpp.commands import BenchSettings
from device_agents.llamacpp.local import run_local_bench
from device_agents.measure_policy import flaws, pick
from device_agents.protocol import RemeasurePolicy
from device_agents.schemas import ContextMeasurement, Stat, Thermal
from tests.runtime.tiny_gguf import SMALLEST, write_tiny_gguf
from tests.support.fake_llama_bench import expected_samples_ns, write_fake_llama_bench

SETTINGS = BenchSettings(threads=1, n_gen=4, repetitions=3)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = dataclasses.replace(SMALLEST, context_length=4096)
    return write_tiny_gguf(tmp_path_factory.mktemp("policy") / "tiny.gguf", config)


def _ttft_ms(context: int, noise_pct: int) -> list[float]:
    ns = expected_samples_ns(n_prompt=context, n_gen=0, n_depth=0, repetitions=3,
                             noise_pct=noise_pct)  # fmt: skip
    return [s / 1e6 for s in ns]


def test_noisy_first_try_is_measured_again_and_the_quiet_try_is_kept(
    model: Path, tmp_path: Path
) -> None:
    # runs: try 1 prefill (60% spread: cv ~0.5), try 1 decode, try 2 prefill, try 2 decode
    fake = write_fake_llama_bench(tmp_path / "bin", noise_pct=[60, 0, 0, 0])
    report = run_local_bench(model, [64], SETTINGS, fake, remeasure=RemeasurePolicy(max_tries=3))
    (only,) = report.contexts
    assert only.tries == 2
    assert only.ttft_ms is not None and only.ttft_ms.samples == pytest.approx(_ttft_ms(64, 0))
    assert only.conditions is not None and only.conditions.note is not None
    assert "kept try 2 of 2" in only.conditions.note and "TTFT cv" in only.conditions.note
    assert int((fake.parent / ".runs").read_text()) == 4  # exactly two tries of two processes


def test_remeasurement_is_bounded_and_keeps_the_least_noisy_try(
    model: Path, tmp_path: Path
) -> None:
    # every try noisy (decode spreads 90%, 30%, 60%): three tries, the second one kept
    fake = write_fake_llama_bench(tmp_path / "bin", noise_pct=[0, 90, 0, 30, 0, 60, 0, 0])
    report = run_local_bench(model, [64], SETTINGS, fake, remeasure=RemeasurePolicy(max_tries=3))
    (only,) = report.contexts
    assert only.tries == 3
    assert int((fake.parent / ".runs").read_text()) == 6  # not a fourth try
    decode = expected_samples_ns(n_prompt=0, n_gen=4, n_depth=64, repetitions=3, noise_pct=30)
    assert only.decode_ms_per_token is not None
    assert only.decode_ms_per_token.samples == pytest.approx([s / 4 / 1e6 for s in decode])
    assert only.conditions is not None and "kept try 2 of 3" in (only.conditions.note or "")


def test_a_quiet_figure_is_measured_once(model: Path, tmp_path: Path) -> None:
    fake = write_fake_llama_bench(tmp_path / "bin")
    report = run_local_bench(model, [64, 128], SETTINGS, fake,
                             remeasure=RemeasurePolicy(max_tries=3))  # fmt: skip
    assert [c.tries for c in report.contexts] == [1, 1]
    assert int((fake.parent / ".runs").read_text()) == 4


def test_x86_skips_larger_contexts_after_a_timeout_like_the_phone(
    model: Path, tmp_path: Path
) -> None:
    fake = write_fake_llama_bench(tmp_path / "bin", mode="sleep", sleep_s=60)
    report = run_local_bench(model, [128, 256, 64], SETTINGS, fake, timeout_s=0.5)
    first, larger, smaller = report.contexts
    assert first.error is not None and "timed out" in first.error
    assert larger.error == "not run: context 128 exceeded its deadline" and not larger.oom
    assert smaller.error is not None and "timed out" in smaller.error  # smaller: still tried
    assert int((fake.parent / ".runs").read_text()) == 2


def test_x86_skips_larger_contexts_after_an_oom(model: Path, tmp_path: Path) -> None:
    fake = write_fake_llama_bench(tmp_path / "bin", mode="oom")
    report = run_local_bench(model, [64, 128], SETTINGS, fake,
                             remeasure=RemeasurePolicy(max_tries=3))  # fmt: skip
    assert [(c.oom, c.error, c.tries) for c in report.contexts] == [
        (True, None, 1),  # an OOM is a result: not re-measured
        (True, "not run: out of memory at context 64", 1),
    ]


def _measured(cv_ttft: float, hot_c: float | None = None) -> ContextMeasurement:
    def stat(cv: float) -> Stat:
        return Stat(median=10.0, stddev=10.0 * cv, samples=[10.0])

    thermal = Thermal(zones={"cpu": hot_c}) if hot_c is not None else None
    return ContextMeasurement(context=64, ttft_ms=stat(cv_ttft), decode_ms_per_token=stat(0.01),
                              peak_rss_bytes=1, thermal_after=thermal)  # fmt: skip


def test_pick_prefers_a_cool_figure_over_a_quieter_hot_one() -> None:
    policy = RemeasurePolicy(noisy_cv=0.1, hot_celsius=45.0)
    tries = [_measured(0.3), _measured(0.01, hot_c=60.0), _measured(0.2)]
    assert pick(tries, policy) == 2
    assert flaws(tries[1], policy) == ["60.0 C > 45.0 C"]
    assert flaws(_measured(0.05), policy) == []


def test_star_bench_remeasures_with_max_tries(model: Path, tmp_path: Path) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from star.cli import bench as bench_cli

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    bench_cli.register(app)
    fake = write_fake_llama_bench(tmp_path / "bin", noise_pct=[60, 0, 0, 0])
    result = CliRunner().invoke(app, ["bench", str(model), "--contexts", "64", "--threads", "1",
                                      "--repeats", "3", "--llama-bench", str(fake),
                                      "--max-tries", "3", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (only,) = json.loads(result.stdout)["contexts"]
    assert only["tries"] == 2 and only["conditions"]["note"].startswith("no quiet wait")

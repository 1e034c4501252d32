"""Bad input is refused before anything is built, with the option and the reason named."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_agents.executorch import PteBenchSettings, validate_pte
from device_agents.llamacpp.commands import BenchInputError
from star.cli.main import app
from star.export import ExportValidationError
from star.export.executorch import PteOptions
from tests.conftest import GENOMES
from tests.executorch.specs import MIXED

runner = CliRunner()


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({"prefill_chunk": 1}, "prefill_chunk", "outside [2, 1024]"),
        ({"prefill_chunk": 64, "max_context": 64}, "max_context", "must exceed one prefill chunk"),
        ({"max_context": 513}, "max_context", "exceeds the genome's context_length 512"),
        ({"quant": "q4_0"}, "quant", "is not one of fp32, 8da4w"),
    ],
)
def test_options_refuse_with_field_and_reason(kwargs: dict, field: str, reason: str) -> None:
    with pytest.raises(ExportValidationError) as info:
        PteOptions.for_spec(MIXED, **kwargs)
    assert info.value.item == field
    assert reason in str(info.value)


def test_default_max_context_is_capped_by_the_genome() -> None:
    assert PteOptions.for_spec(MIXED).max_context == 512  # context_length 512 < 8192


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quant", "q4_0", "-o", "m.pte"], "--quant q4_0 is a GGUF type"),
        (["-o", "m.gguf"], "must end in .pte"),
        (["--max-context", "200000", "-o", "m.pte"], "exceeds the genome's context_length 128000"),
        (["--prefill-chunk", "1", "-o", "m.pte"], "prefill_chunk: 1 is outside"),
        ([], "missing --output"),
    ],
)
def test_cli_export_executorch_refusals(args: list[str], message: str) -> None:
    genome = GENOMES / "lfm2-350m.yaml"
    result = runner.invoke(app, ["export", str(genome), "--runtime", "executorch", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_gguf_export_refuses_executorch_quant() -> None:
    genome = GENOMES / "lfm2-350m.yaml"
    result = runner.invoke(app, ["export", str(genome), "--quant", "8da4w", "-o", "m.gguf"])
    assert result.exit_code == 2
    assert "add --runtime executorch" in result.output


def test_cli_dry_run_accepts_linear_attention_genome() -> None:
    """A genome no stock llama.cpp architecture runs is exportable for ExecuTorch."""
    genome = GENOMES / "hybrid-linear-attn-350m.yaml"
    result = runner.invoke(
        app, ["export", str(genome), "--runtime", "executorch", "--dry-run", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert '"max_context": 8192' in result.output


def test_bench_refuses_a_file_that_is_not_a_program(tmp_path: Path) -> None:
    fake = tmp_path / "model.pte"
    fake.write_bytes(b"GGUF" + bytes(60))
    result = runner.invoke(app, ["bench", str(fake), "--contexts", "64"])
    assert result.exit_code == 2
    assert "not an ExecuTorch program" in result.output


def test_bench_refuses_llama_cpp_flags_for_a_pte(tmp_path: Path) -> None:
    fake = tmp_path / "model.pte"
    fake.write_bytes(bytes(4) + b"ET12" + bytes(56))
    result = runner.invoke(app, ["bench", str(fake), "--contexts", "64", "--flash-attn", "on"])
    assert result.exit_code == 2
    assert "llama.cpp settings" in result.output


@pytest.mark.parametrize(
    ("contexts", "message"),
    [([], "no contexts"), ([0], "must be positive"), ([64, 64], "only once")],
)
def test_validate_pte_refuses_bad_contexts(tmp_path: Path, contexts: list[int],
                                           message: str) -> None:
    fake = tmp_path / "model.pte"
    fake.write_bytes(bytes(4) + b"ET12" + bytes(56))
    with pytest.raises(BenchInputError, match=message):
        validate_pte(fake, contexts, n_gen=8)


def test_bench_settings_refuse_zero_threads() -> None:
    with pytest.raises(BenchInputError):
        PteBenchSettings(threads=0)

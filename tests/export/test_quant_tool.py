"""Quantized exports against the pinned ``llama-quantize`` itself.

- ``star export --quant q4_k_m`` IS ``llama-quantize F16 OUT Q4_K_M`` of our F16 export: byte for
  byte, and tensor by tensor (names, types, data) for a clearer failure;
- the ported rule (``star.export.mixture``) gives every tensor the type the tool gives it, for
  every export target and every offered type, on rows of 64 (K-quants fall back) and of 256
  (K-quants apply); where the tool refuses (Q1_0 on rows that are not multiples of 128) the rule
  refuses the same tensor;
- the cost model's weight bytes, computed from the spec alone, equal the tensor bytes of the
  tool's file;
- every offered type loads in llama.cpp and gives logits near F32's (loose, per family).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from star.cost import weight_bytes
from star.export import Quant, UnsupportedQuant, export_gguf, plan_export
from star.genome.spec import ArchSpec
from star.runtime import RuntimeInfo
from star.runtime.logits import eval_logits
from tests.export.export_specs import SPECS, build_model, tokens, torch_logits
from tests.export.quant_specs import KSPECS

ALL_SPECS: dict[str, ArchSpec] = {
    **{f"{k}@64": s for k, s in SPECS.items()},
    **{f"{k}@256": s for k, s in KSPECS.items()},
}
TOOL_QUANTS = [q for q in Quant if q.by_tool]


@pytest.fixture(scope="module")
def f16_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("f16")
    return {key: export_gguf(spec, build_model(spec), root / f"{key}.gguf", quant="f16").path
            for key, spec in ALL_SPECS.items()}


def _tool(runtime: RuntimeInfo, src: Path, dst: Path, quant: Quant) -> subprocess.CompletedProcess:
    return subprocess.run([str(runtime.llama_quantize), str(src), str(dst), quant.tool_name],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("key", sorted(KSPECS))
def test_q4_k_m_export_is_llama_quantize_of_our_f16_export(
    key: str, runtime: RuntimeInfo, tmp_path: Path
) -> None:
    spec = KSPECS[key]
    model = build_model(spec)
    f16 = export_gguf(spec, model, tmp_path / "f16.gguf", quant="f16").path
    ours = export_gguf(spec, model, tmp_path / "ours.gguf", quant="q4_k_m")
    assert _tool(runtime, f16, tmp_path / "tool.gguf", Quant.Q4_K_M).returncode == 0
    a, b = GGUFReader(ours.path), GGUFReader(tmp_path / "tool.gguf")
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for x, y in zip(a.tensors, b.tensors, strict=True):
        assert x.tensor_type == y.tensor_type, x.name
        np.testing.assert_array_equal(np.asarray(x.data), np.asarray(y.data), err_msg=x.name)
    assert ours.path.read_bytes() == (tmp_path / "tool.gguf").read_bytes()
    assert ours.quantized_by.startswith("llama-quantize (llama.cpp ")
    # K-quants applied (rows of 256; only nemotron_h's no-op attention output has rows of 32):
    # the head at Q6_K, most matrices Q4_K
    counts = ours.type_counts()
    assert counts["Q4_K"] > counts.get("Q6_K", 0) > 0 and counts.get("Q5_0", 0) <= 1


# Every type on rows of 64 (fast: K-quants fall back); on rows of 256 the shipped types here and
# the rest in the slow step (IQ3 quantization alone takes seconds per file on a busy machine).
SHIPPED = [Quant.Q4_K_M, Quant.Q5_K_M, Quant.Q6_K, Quant.Q8_0, Quant.Q4_0]
CASES = [(key, TOOL_QUANTS if key.endswith("@64") else SHIPPED) for key in sorted(ALL_SPECS)]
SLOW_CASES = [(key, [q for q in TOOL_QUANTS if q not in SHIPPED])
              for key in sorted(ALL_SPECS) if key.endswith("@256")]


def _rule_and_cost_model_match_the_tool(
    key: str, quants: list[Quant], f16: Path, runtime: RuntimeInfo, tmp_path: Path
) -> None:
    """For each type: the tool's type of every tensor == the rule's; the file's tensor bytes ==
    ``star.cost.weight_bytes`` of the spec (computed without any file)."""
    spec = ALL_SPECS[key]
    plan = plan_export(spec, build_model(spec), quant="f16")
    for quant in quants:
        out = tmp_path / f"{quant.value}.gguf"
        proc = _tool(runtime, f16, out, quant)
        if proc.returncode != 0:
            assert "no tensor type fallback" in proc.stderr, (quant, proc.stderr[-500:])
            with pytest.raises(UnsupportedQuant, match="Q1_0"):
                plan.tensor_types(quant)
            with pytest.raises(UnsupportedQuant):
                weight_bytes(spec, quant)
            continue
        reader = GGUFReader(out)
        got = {t.name: t.tensor_type.name for t in reader.tensors}
        rule = {name: qt.name for name, _, qt in plan.tensor_types(quant)}
        assert got == rule, (quant, {n: (got[n], rule[n]) for n in got if got[n] != rule[n]})
        assert weight_bytes(spec, quant) == sum(int(t.n_bytes) for t in reader.tensors), quant
        out.unlink()


@pytest.mark.parametrize(("key", "quants"), CASES, ids=[c[0] for c in CASES])
def test_rule_and_cost_model_match_llama_quantize(
    key: str, quants: list[Quant], f16_exports: dict[str, Path], runtime: RuntimeInfo,
    tmp_path: Path,
) -> None:
    _rule_and_cost_model_match_the_tool(key, quants, f16_exports[key], runtime, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("key", "quants"), SLOW_CASES, ids=[c[0] for c in SLOW_CASES])
def test_rule_and_cost_model_match_llama_quantize_for_every_type(
    key: str, quants: list[Quant], f16_exports: dict[str, Path], runtime: RuntimeInfo,
    tmp_path: Path,
) -> None:
    _rule_and_cost_model_match_the_tool(key, quants, f16_exports[key], runtime, tmp_path)


def test_q1_0_refusal_is_caught_before_writing(tmp_path: Path) -> None:
    spec = SPECS["llama"]  # rows of 64: Q1_0 (blocks of 128) has no fallback
    with pytest.raises(UnsupportedQuant, match="not a multiple of Q1_0's block of 128"):
        export_gguf(spec, build_model(spec), tmp_path / "m.gguf", quant="q1_0")
    assert list(tmp_path.iterdir()) == []


# Loose checks of llama.cpp's logits against the torch forward pass (F32 KV, flash attention
# off), per family: the minimum correlation of all logits. Seen on LOGITS_SPEC (random weights,
# logits +-40, 48 tokens): f16 1.0000, bf16 0.9992, q8_0 0.997, mxfp4_moe 0.991 (experts MXFP4),
# q6_k 0.993, q5_* >= 0.975, q4_*/iq4_* >= 0.936, q3_*/iq3_* >= 0.830, q2_k 0.65; ternary and
# binary ~0.3 (they are for weights trained to those values, not for rounding Gaussian ones):
# finite logits only.
MIN_CORR = {
    "f16": 0.999, "bf16": 0.995, "q8_0": 0.99, "mxfp4_moe": 0.97, "q6_k": 0.98,
    "q5_k_m": 0.95, "q5_k_s": 0.95, "q5_1": 0.95, "q5_0": 0.95,
    "q4_k_m": 0.9, "q4_k_s": 0.9, "q4_1": 0.9, "q4_0": 0.9, "iq4_nl": 0.9, "iq4_xs": 0.9,
    "q3_k_l": 0.7, "q3_k_m": 0.7, "q3_k_s": 0.7, "iq3_m": 0.7, "iq3_s": 0.7, "q2_k": 0.4,
    "tq2_0": None, "tq1_0": None, "q1_0": None,
}  # fmt: skip
LOGITS_SPEC = KSPECS["lfm2moe"]  # conv, attention, dense and 8-expert MoE layers; untied head


def _loads_and_stays_close(quant: str, tmp_path: Path) -> None:
    model = build_model(LOGITS_SPEC)
    toks = tokens(48)
    result = export_gguf(LOGITS_SPEC, model, tmp_path / f"{quant}.gguf", quant=quant)
    out = eval_logits(result.path, toks, kv_type="f32", flash_attn=False)
    ref = torch_logits(model, toks)
    assert out.shape == ref.shape and np.isfinite(out).all()
    min_corr = MIN_CORR[quant]
    if min_corr is not None:
        assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > min_corr


def test_every_offered_type_has_a_tolerance() -> None:
    assert sorted(MIN_CORR) == sorted(q.value for q in Quant if q != Quant.F32)


@pytest.mark.parametrize("quant", ["q4_k_m", "q4_0", "q6_k"])
def test_shipped_types_load_and_stay_close(
    quant: str, runtime: RuntimeInfo, tmp_path: Path
) -> None:
    _loads_and_stays_close(quant, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("quant", sorted(set(MIN_CORR) - {"q4_k_m", "q4_0", "q6_k"}))
def test_every_offered_type_loads_and_stays_close(
    quant: str, runtime: RuntimeInfo, tmp_path: Path
) -> None:
    _loads_and_stays_close(quant, tmp_path)

"""The writer: storage-type rule, tokenizer, validation before writing, read-back after."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as QT
from gguf import GGUFReader, GGUFValueType

import star.export.writer as writer_mod
from star.export import (
    ExportReadbackError,
    ExportValidationError,
    UnknownQuant,
    export_gguf,
    plan_export,
    tensor_nbytes,
)
from star.export.mixture import written_type
from star.export.tokenizer import MIN_SPM_VOCAB, synthetic_tokenizer
from star.export.validate import validate_metadata, validate_tensors
from tests.export.export_specs import SPECS, arch, attn, build_model, conv, swiglu


@pytest.mark.parametrize(
    ("name", "shape", "requested", "expected"),
    [
        ("blk.0.ffn_up.weight", (64, 128), "f16", QT.F16),
        ("blk.0.attn_q.weight", (64, 64), "f16", QT.F16),
        ("token_embd.weight", (64, 384), "f16", QT.F16),
        ("blk.1.ffn_gate_exps.weight", (64, 64, 8), "f16", QT.F16),  # 3-D expert stacks
        ("blk.0.ffn_up.weight", (100, 64), "f16", QT.F16),  # no block: any row length
        ("blk.0.attn_norm.weight", (64,), "f16", QT.F32),
        ("blk.0.attn_q_norm.weight", (16,), "f16", QT.F32),
        ("token_embd_norm.weight", (64,), "f16", QT.F32),
        ("blk.0.shortconv.conv.weight", (3, 64), "f16", QT.F32),  # CPU conv reads F32
        ("blk.0.shortconv.in_proj.weight", (64, 192), "f16", QT.F16),
        ("blk.0.ssm_conv1d.weight", (4, 192), "f16", QT.F32),
        ("blk.0.ssm_conv1d.bias", (192,), "f16", QT.F32),
        ("blk.0.ssm_a", (1, 8), "f16", QT.F32),
        ("blk.0.ssm_d", (1, 8), "f16", QT.F32),
        ("blk.0.ssm_dt.bias", (8,), "f16", QT.F32),
        ("blk.0.ssm_norm.weight", (64, 2), "f16", QT.F32),
        ("blk.0.ffn_gate_inp.weight", (64, 8), "f16", QT.F32),  # router stays F32
        ("blk.0.exp_probs_b.bias", (8,), "f16", QT.F32),
        ("blk.0.ffn_up.weight", (64, 128), "f32", QT.F32),
        ("blk.0.ffn_up.weight", (64, 128), "q4_k_m", QT.F16),  # the F16 file llama-quantize reads
    ],
)
def test_written_type_rule(
    name: str, shape: tuple[int, ...], requested: str, expected: QT
) -> None:
    assert written_type(name, shape, requested) == expected


def test_unknown_quant_names_the_choices() -> None:
    with pytest.raises(UnknownQuant, match="choose one of: f32, f16, bf16, q8_0, q6_k"):
        written_type("blk.0.ffn_up.weight", (64, 128), "q5_k")
    with pytest.raises(UnknownQuant, match="importance matrix"):
        plan_export(SPECS["llama"], build_model(SPECS["llama"]), quant="iq2_xs")
    assert issubclass(UnknownQuant, ValueError)


def test_tensor_nbytes() -> None:
    assert tensor_nbytes((64, 128), QT.F32) == 64 * 128 * 4
    assert tensor_nbytes((64, 128), QT.Q8_0) == 64 * 128 // 32 * 34
    assert tensor_nbytes((64, 128), QT.Q4_0) == 64 * 128 // 32 * 18


@pytest.mark.parametrize("quant", ["f32", "f16", "q8_0", "q4_0"])
@pytest.mark.parametrize("key", sorted(SPECS))
def test_export_reads_back(key: str, quant: str, tmp_path: Path) -> None:
    spec = SPECS[key]
    model = build_model(spec)
    result = export_gguf(spec, model, tmp_path / "m.gguf", quant=quant)
    reader = GGUFReader(result.path)
    assert reader.get_field("general.architecture").contents() == result.arch
    assert len(reader.tensors) == result.n_tensors
    assert len(result.tensor_types) == result.n_tensors
    for t in reader.tensors:
        assert t.tensor_type.name == result.tensor_types[t.name], t.name
    assert result.quantized_by.startswith("star" if quant in ("f32", "f16") else "llama-quantize")
    assert result.size_bytes == result.path.stat().st_size
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert result.quant == quant
    names = {t.name for t in reader.tensors}
    assert ("output.weight" in names) == (not spec.tie_embeddings)
    assert not list(tmp_path.glob("*.partial"))


def test_lfm2_layout(tmp_path: Path) -> None:
    spec = SPECS["lfm2"]
    model = build_model(spec)
    result = export_gguf(spec, model, tmp_path / "m.gguf")
    reader = GGUFReader(result.path)
    tensors = {t.name: t for t in reader.tensors}
    assert "token_embd_norm.weight" in tensors and "output_norm.weight" not in tensors
    conv_w = tensors["blk.0.shortconv.conv.weight"]
    assert tuple(int(x) for x in conv_w.shape) == (3, 64)  # ggml {L, d}
    expected = model.layers[0].mixer.conv.weight.detach()[:, 0, :].numpy()
    np.testing.assert_array_equal(np.asarray(conv_w.data).reshape(64, 3), expected)
    # layers 0 and 3 share their conv: every layer gets its own copy of the owner's weights
    for part in ("conv.weight", "in_proj.weight", "out_proj.weight"):
        a = np.asarray(tensors[f"blk.0.shortconv.{part}"].data)
        b = np.asarray(tensors[f"blk.3.shortconv.{part}"].data)
        np.testing.assert_array_equal(a, b)
    kv = reader.get_field("lfm2.attention.head_count_kv").contents()
    assert kv == [0, 2, 0, 0, 4, 0]  # per layer; 0 = short conv
    assert reader.get_field("lfm2.shortconv.l_cache").contents() == 3
    assert reader.get_field("lfm2.feed_forward_length").contents() == 128


def test_ssm_transforms(tmp_path: Path) -> None:
    spec = SPECS["mamba2"]
    model = build_model(spec)
    reader = GGUFReader(export_gguf(spec, model, tmp_path / "m.gguf").path)
    tensors = {t.name: t for t in reader.tensors}
    mixer = model.layers[1].mixer
    a = np.asarray(tensors["blk.1.ssm_a"].data).reshape(-1)
    np.testing.assert_allclose(a, -torch.exp(mixer.A_log.detach()).numpy(), rtol=1e-6)
    norm = tensors["blk.1.ssm_norm.weight"]
    assert tuple(int(x) for x in norm.shape) == (64, 2)  # {d_inner / G, G}
    assert reader.get_field("mamba2.ssm.time_step_rank").contents() == 8  # SSM heads


def test_nemotron_h_splits_mlp_layers(tmp_path: Path) -> None:
    spec = SPECS["nemotron_h"]  # ssm+mlp, ssm, ssm+mlp(96), ssm+mlp
    reader = GGUFReader(export_gguf(spec, build_model(spec), tmp_path / "m.gguf").path)
    assert reader.get_field("nemotron_h.block_count").contents() == 8
    ff = reader.get_field("nemotron_h.feed_forward_length").contents()
    assert ff == [0, 0, 128, 0, 0, 96, 0, 128]  # block 0: the no-op attention block
    kv = reader.get_field("nemotron_h.attention.head_count_kv").contents()
    assert kv == [1, 0, 0, 0, 0, 0, 0, 0]
    out = next(t for t in reader.tensors if t.name == "blk.0.attn_output.weight")
    assert not np.asarray(out.data).any()  # zero output projection: an exact no-op


def test_tokenizer_forms() -> None:
    spm = synthetic_tokenizer(384)
    assert spm.model == "llama" and spm.handles_text
    meta = spm.metadata()
    tokens = meta["tokenizer.ggml.tokens"][0]
    assert len(tokens) == 384 == len(set(tokens))
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and tokens[3] == "<0x00>"
    assert tokens[258] == "<0xFF>"
    assert len(meta["tokenizer.ggml.token_type"][0]) == 384
    small = synthetic_tokenizer(MIN_SPM_VOCAB - 1)
    assert small.model == "none" and not small.handles_text
    assert list(small.metadata()) == ["tokenizer.ggml.model"]
    exact = synthetic_tokenizer(MIN_SPM_VOCAB).metadata()["tokenizer.ggml.tokens"][0]
    assert len(exact) == MIN_SPM_VOCAB


def _widen_ffn(state: dict[str, torch.Tensor], layer: int, extra: int) -> None:
    for part in ("gate", "up"):
        w = state[f"layers.{layer}.ffn.{part}.weight"]
        state[f"layers.{layer}.ffn.{part}.weight"] = torch.cat([w, w[:extra]])
    w = state[f"layers.{layer}.ffn.down.weight"]
    state[f"layers.{layer}.ffn.down.weight"] = torch.cat([w, w[:, :extra]], dim=1)


def test_wrong_ffn_width_in_weights_is_caught_before_writing(tmp_path: Path) -> None:
    spec = SPECS["lfm2"]
    state = dict(build_model(spec).state_dict())
    _widen_ffn(state, 2, 32)
    out = tmp_path / "m.gguf"
    with pytest.raises(ExportValidationError) as info:
        export_gguf(spec, state, out)
    assert info.value.item == "blk.2.ffn_gate.weight"
    assert "(64, 160)" in info.value.reason and "(64, 128)" in info.value.reason
    assert list(tmp_path.iterdir()) == []


def test_wrong_ffn_width_in_metadata_is_caught() -> None:
    spec = SPECS["qwen3"]
    plan = plan_export(spec, build_model(spec))
    meta = dict(plan.metadata)
    meta["qwen3.feed_forward_length"] = (128, GGUFValueType.UINT32)  # tensors say 160
    validate_metadata("qwen3", meta, quant=plan.quant)  # well-formed on its own
    with pytest.raises(ExportValidationError) as info:
        validate_tensors("qwen3", meta, plan.tensor_types(), quant=plan.quant)
    assert info.value.item == "blk.0.ffn_gate.weight"
    assert "(64, 128)" in info.value.reason


def test_metadata_and_tensor_set_validation() -> None:
    spec = SPECS["lfm2moe"]
    plan = plan_export(spec, build_model(spec))
    q = plan.quant
    types = plan.tensor_types()

    def meta_with(**changes: tuple[object, GGUFValueType] | None) -> dict:
        meta = dict(plan.metadata)
        for key, value in changes.items():
            key = key.replace("__", ".")
            if value is None:
                del meta[key]
            else:
                meta[key] = value
        return meta

    cases = {
        "lfm2moe.context_length": meta_with(
            lfm2moe__context_length=(512.0, GGUFValueType.FLOAT32)  # llama.cpp reads uint32
        ),
        "lfm2moe.expert_gating_func": meta_with(lfm2moe__expert_gating_func=None),
        "lfm2moe.expert_used_count": meta_with(
            lfm2moe__expert_used_count=(9, GGUFValueType.UINT32)  # > 8 experts
        ),
        "lfm2moe.attention.head_count_kv": meta_with(
            lfm2moe__attention__head_count_kv=([0, 2, 0], GGUFValueType.ARRAY)
        ),
        "tokenizer.ggml.tokens": meta_with(
            tokenizer__ggml__tokens=(["a"] * 384, GGUFValueType.ARRAY)
        ),
        "lfm2moe.attention.sliding_window": meta_with(
            lfm2moe__attention__sliding_window=(8, GGUFValueType.UINT32)  # lfm2moe has no SWA
        ),
    }
    for item, meta in cases.items():
        with pytest.raises(ExportValidationError) as info:
            validate_metadata("lfm2moe", meta, quant=q)
        assert info.value.item == item, (item, str(info.value))

    missing = [t for t in types if t[0] != "blk.1.exp_probs_b.bias"]
    with pytest.raises(ExportValidationError, match="blk.1.exp_probs_b.bias: required"):
        validate_tensors("lfm2moe", plan.metadata, missing, quant=q)
    extra = [*types, ("blk.0.ffn_gate_exps.weight", (64, 64, 8), QT.F32)]
    with pytest.raises(ExportValidationError, match="blk.0.ffn_gate_exps.weight: lfm2moe has no"):
        validate_tensors("lfm2moe", plan.metadata, extra, quant=q)
    f16_conv = [(n, s, QT.F16 if "shortconv.conv" in n else t) for n, s, t in types]
    with pytest.raises(ExportValidationError, match="shortconv.conv.weight: stored as F16"):
        validate_tensors("lfm2moe", plan.metadata, f16_conv, quant=q)


def test_state_dict_must_match_the_spec() -> None:
    spec = SPECS["llama"]
    state = dict(build_model(spec).state_dict())
    state["layers.0.mixer.q_norm.weight"] = torch.ones(16)
    with pytest.raises(ExportValidationError, match="layers.0.mixer.q_norm.weight: not part"):
        plan_export(spec, state)
    del state["layers.0.mixer.q_norm.weight"]
    del state["layers.1.ffn.up.weight"]
    with pytest.raises(ExportValidationError, match="layers.1.ffn.up.weight: missing"):
        plan_export(spec, state)


def test_small_vocabulary_gets_tokenizer_none(tmp_path: Path) -> None:
    spec = arch([(conv(), swiglu()), (attn(), swiglu())], vocab=200)
    result = export_gguf(spec, build_model(spec), tmp_path / "m.gguf")
    assert result.tokenizer == "none"
    reader = GGUFReader(result.path)
    assert reader.get_field("tokenizer.ggml.model").contents() == "none"
    assert reader.get_field("lfm2.vocab_size").contents() == 200


@pytest.mark.parametrize("quant", ["f32", "q4_k_m"])
def test_failed_read_back_leaves_no_file(
    quant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last read-back failing (our file for f32, llama-quantize's output for q4_k_m) leaves
    neither the file nor the intermediate F16 behind."""
    real = writer_mod._read_back

    def broken_last(path: Path, *args: object, same_order: bool) -> None:
        if same_order and quant != "f32":
            real(path, *args, same_order=same_order)  # type: ignore[arg-type]
            return
        raise ExportReadbackError("simulated")

    monkeypatch.setattr(writer_mod, "_read_back", broken_last)
    spec = SPECS["llama"]
    with pytest.raises(ExportReadbackError):
        export_gguf(spec, build_model(spec), tmp_path / "m.gguf", quant=quant)
    assert list(tmp_path.iterdir()) == []


def test_llama_rope_permutation_is_the_documented_one() -> None:
    from star.export.tensors import permute_rope_rows

    hd, heads, cols = 8, 2, 3
    w = np.arange(heads * hd * cols, dtype=np.float32).reshape(heads * hd, cols)
    p = permute_rope_rows(w, heads)
    for h in range(heads):
        for i in range(hd // 2):
            np.testing.assert_array_equal(p[h * hd + 2 * i], w[h * hd + i])
            np.testing.assert_array_equal(p[h * hd + 2 * i + 1], w[h * hd + i + hd // 2])

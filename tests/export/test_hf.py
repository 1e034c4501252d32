"""Hugging Face export: every mapped family loads with ``AutoModelForCausalLM.from_pretrained``
and gives the logits of llama.cpp (on the F32 GGUF of the same weights) and of ``star.nn``;
unmappable genomes are refused before a file is written; the CLI; the config fields that change
the computation; the tokenizer against llama.cpp's.

Seen here (48 tokens, logits spanning about +-32..53, F32), max abs over the 8 families below:
HF vs star.nn <= 2.9e-5 (exactly 0 for lfm2, qwen3, llama: the same torch ops), HF vs llama.cpp
<= 3.9e-5 (star.nn vs llama.cpp is <= 3.9e-5 on the same files). One wrong config default
(NemotronH's dt clamp) moves the logits by 6e-2, so the tolerance is sharp.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402  (test dependency: the reference loader)
from gguf import GGUFReader  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from star.cli.main import app  # noqa: E402
from star.export import (  # noqa: E402
    ExportValidationError,
    UnsupportedGenome,
    export_gguf,
    export_hf,
)
from star.export.hf import hf_name_map  # noqa: E402
from star.genome import PROXY, load_genome, scale_spec  # noqa: E402
from star.genome.spec import LinearAttentionSpec, Norm  # noqa: E402
from star.nn import StarModel  # noqa: E402
from star.runtime import RuntimeInfo  # noqa: E402
from star.runtime.logits import eval_logits  # noqa: E402
from tests.conftest import GENOMES  # noqa: E402
from tests.export.export_specs import (  # noqa: E402
    SPECS,
    arch,
    attn,
    build_model,
    conv,
    mlp,
    moe,
    randomize,
    ssm,
    swiglu,
    tokens,
    torch_logits,
)

HF_TOL = 2e-4  # F32 everywhere; seen <= 3.9e-5 (module doc)
N_TOKENS = 48
runner = CliRunner()
LFM2 = GENOMES / "lfm2-350m.yaml"

# One spec per transformers family, each exercising what the mapping must get right.
HF_SPECS = {
    "lfm2": SPECS["lfm2"],  # KV heads 2 and 4 (repeated to 4); layers 0 and 3 share conv weights
    "lfm2moe": SPECS["lfm2moe"],  # a leading dense layer, selection bias, untied head
    "lfm2moe-nobias": SPECS["lfm2moe-nobias"],  # no dense layer, no selection bias
    "qwen3": SPECS["qwen3"],  # head_dim 32 * 4 heads != d_model 64
    "llama": SPECS["llama"],  # MQA, no QK-norm
    "mamba2": SPECS["mamba2"],  # 2 SSM groups, untied
    "granitehybrid": SPECS["granitehybrid"],  # KV heads 2 and 1 (repeated to 2)
    # a tied head that NemotronH cannot tie (written out) and the no-op attention block 0
    "nemotron_h": arch(
        [(ssm(), mlp(128)), (ssm(), None), (ssm(), mlp(128))], name="nemotron_h-hf", tie=True
    ),
}
ARCHITECTURE = {
    "lfm2": "Lfm2ForCausalLM", "lfm2moe": "Lfm2MoeForCausalLM",
    "lfm2moe-nobias": "Lfm2MoeForCausalLM", "qwen3": "Qwen3ForCausalLM",
    "llama": "LlamaForCausalLM", "mamba2": "Mamba2ForCausalLM",
    "granitehybrid": "GraniteMoeHybridForCausalLM", "nemotron_h": "NemotronHForCausalLM",
}  # fmt: skip


@pytest.fixture(scope="module")
def toks() -> list[int]:
    return tokens(N_TOKENS)


def load_hf(path: Path, **kwargs: object) -> torch.nn.Module:
    """from_pretrained, asserting every tensor of the folder was used and none was missing
    (transformers would otherwise initialise a missing one at random, silently)."""
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        path, output_loading_info=True, **kwargs
    )
    assert not any(info.values()), info
    return model.eval()


@torch.no_grad()
def hf_logits(model: torch.nn.Module, toks: list[int]) -> np.ndarray:
    return model(torch.tensor([toks])).logits[0].float().numpy()  # (T, V)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


@pytest.mark.parametrize("key", sorted(HF_SPECS))
def test_hf_folder_matches_llama_cpp_and_star_nn(
    key: str, toks: list[int], runtime: RuntimeInfo, tmp_path: Path
) -> None:
    spec = HF_SPECS[key]
    model = build_model(spec)
    ref = torch_logits(model, toks)
    gguf = export_gguf(spec, model, tmp_path / "m.gguf", quant="f32").path
    cpp = eval_logits(gguf, toks, kv_type="f32", flash_attn=False)
    result = export_hf(spec, model, tmp_path / "hf")
    hf = load_hf(result.path)
    assert type(hf).__name__ == result.architecture == ARCHITECTURE[key]
    got = hf_logits(hf, toks)
    assert np.abs(ref).max() > 10  # not a comparison of near-zero logits
    assert max_diff(got, ref) < HF_TOL
    assert max_diff(got, cpp) < HF_TOL


REFUSED = {
    # name: (spec, offending layer (None = whole model), operator)
    "linear attention": (arch([(LinearAttentionSpec(4, 16), swiglu())]), 0, "linear_attention"),
    "layernorm": (arch([(attn(), swiglu())], norm=Norm.LAYERNORM), 0, "layernorm"),
    "sliding window in lfm2": (SPECS["lfm2-swa"], 1, "swa"),
    "per-layer MLP widths": (SPECS["nemotron_h"], 2, "mlp"),
    "attention-free lfm2": (arch([(conv(), swiglu()), (conv(), swiglu())]), None, "shortconv"),
    "moe beside Mamba-2": (arch([(ssm(groups=1), moe()), (attn(qk_norm=False), swiglu())]), 0,
                           "moe"),
    "short conv with Mamba-2": (arch([(conv(), swiglu()), (ssm(), swiglu())]), 1, "ssm"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unmappable_genome_is_refused_before_writing(case: str, tmp_path: Path) -> None:
    spec, layer, operator = REFUSED[case]
    out = tmp_path / "hf"
    with pytest.raises(UnsupportedGenome) as err:
        export_hf(spec, StarModel(spec, device="cpu"), out)
    assert (err.value.layer, err.value.operator) == (layer, operator)
    assert "ForCausalLM" in str(err.value) or err.value.target is None  # names what was tried
    assert not out.exists()


def test_weights_of_another_spec_are_refused_before_writing(tmp_path: Path) -> None:
    spec = HF_SPECS["llama"]
    other = arch([(attn(kv=1, qk_norm=False), swiglu(96))] * 4)  # FFN 96 instead of 128
    out = tmp_path / "hf"
    with pytest.raises(ExportValidationError, match=r"layers\.0\.ffn\.gate\.weight"):
        export_hf(spec, StarModel(other, device="cpu"), out)
    assert not out.exists()


# config.json fields that change the computation, per family (beyond the shapes, which
# from_pretrained checks against the tensors).
CONFIG_FIELDS = {
    "lfm2": {"block_auto_adjust_ff_dim": False, "intermediate_size": 128, "conv_L_cache": 3,
             "num_key_value_heads": 4, "tie_word_embeddings": True,
             "layer_types": ["conv", "full_attention", "conv", "conv", "full_attention", "conv"]},
    "lfm2moe": {"num_dense_layers": 1, "use_expert_bias": True, "norm_topk_prob": True,
                "routed_scaling_factor": 1.0, "num_experts_per_tok": 2,
                "tie_word_embeddings": False},
    "qwen3": {"head_dim": 32, "use_sliding_window": False},
    "mamba2": {"expand": 2, "n_groups": 2, "use_conv_bias": True},
    "granitehybrid": {"num_local_experts": 0, "shared_intermediate_size": 128,
                      "position_embedding_type": "rope", "embedding_multiplier": 1.0,
                      "residual_multiplier": 1.0, "logits_scaling": 1.0,
                      "attention_multiplier": 16**-0.5, "mamba_expand": 2,
                      "layer_types": ["mamba", "mamba", "attention", "mamba", "attention"]},
    "nemotron_h": {"hybrid_override_pattern": "*M-MM-", "num_hidden_layers": 6,
                   "time_step_min": 0.0, "mlp_hidden_act": "relu2", "tie_word_embeddings": False},
}  # fmt: skip


@pytest.mark.parametrize("key", sorted(CONFIG_FIELDS))
def test_config_sets_what_changes_the_computation(key: str, tmp_path: Path) -> None:
    spec = HF_SPECS[key]
    out = export_hf(spec, StarModel(spec, device="cpu"), tmp_path / "hf").path
    config = json.loads((out / "config.json").read_text())
    assert {k: config[k] for k in CONFIG_FIELDS[key]} == CONFIG_FIELDS[key]


def test_rope_theta_reaches_transformers_5_and_is_kept_for_4(tmp_path: Path) -> None:
    """5.x reads ``rope_parameters`` (4.x only ``rope_theta``): both carry the genome's theta,
    and the loaded model's inverse frequencies are those of that theta, not a default."""
    spec = dataclasses.replace(HF_SPECS["llama"], rope_theta=5e5)  # no class defaults to 5e5
    out = export_hf(spec, StarModel(spec, device="cpu"), tmp_path / "hf").path
    config = json.loads((out / "config.json").read_text())
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 5e5}
    assert config["rope_theta"] == 5e5
    hd = 16  # export_specs.attn()
    inv_freq = load_hf(out).model.rotary_emb.inv_freq
    expected = 1.0 / 5e5 ** (torch.arange(0, hd, 2).float() / hd)
    assert torch.allclose(inv_freq, expected)


def test_nemotron_h_folder_generates_and_its_block_0_is_a_no_op(tmp_path: Path) -> None:
    """Without an attention block transformers 5.23's NemotronH cannot generate: block 0 is one
    whose output projection is zero, and greedy decoding follows star.nn's argmax."""
    spec = HF_SPECS["nemotron_h"]
    model = build_model(spec)
    out = export_hf(spec, model, tmp_path / "hf").path
    tensors = load_file(out / "model.safetensors")
    assert not tensors["backbone.layers.0.mixer.o_proj.weight"].any()
    prompt = tokens(8)
    generated = load_hf(out).generate(torch.tensor([prompt]), max_new_tokens=1, do_sample=False)
    assert int(generated[0, -1]) == int(torch_logits(model, prompt)[-1].argmax())


def test_a_class_default_left_in_place_is_caught(toks: list[int], tmp_path: Path) -> None:
    """Dropping one field (NemotronH's dt clamp floor, default 1e-3) breaks the F32 check."""
    spec = HF_SPECS["nemotron_h"]
    model = build_model(spec)
    out = export_hf(spec, model, tmp_path / "hf").path
    config = json.loads((out / "config.json").read_text())
    del config["time_step_min"]
    (out / "config.json").write_text(json.dumps(config))
    assert max_diff(hf_logits(load_hf(out), toks), torch_logits(model, toks)) > 100 * HF_TOL


def test_f16_folder_stores_half_precision_and_stays_close(toks: list[int], tmp_path: Path) -> None:
    spec = HF_SPECS["lfm2"]
    model = build_model(spec)
    result = export_hf(spec, model, tmp_path / "hf", dtype="f16")
    tensors = load_file(result.path / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {np.dtype("float16")}
    assert json.loads((result.path / "config.json").read_text())["dtype"] == "float16"
    got = hf_logits(load_hf(result.path, dtype=torch.float32), toks)
    diff = max_diff(got, torch_logits(model, toks))
    assert 0 < diff < 0.25  # weights rounded to 11 bits: seen 0.03..0.08 over the families


def test_tokenizer_gives_llama_cpp_token_ids(runtime: RuntimeInfo, tmp_path: Path) -> None:
    spec = HF_SPECS["llama"]
    model = build_model(spec)
    gguf = export_gguf(spec, model, tmp_path / "m.gguf").path
    out = export_hf(spec, model, tmp_path / "hf").path
    text = "héllo wörld,  1+1=2\n\ttabs  end "
    code = (
        "import sys; from llama_cpp import Llama\n"
        "m = Llama(sys.argv[1], vocab_only=True, verbose=False)\n"
        "print(m.tokenize(sys.argv[2].encode(), add_bos=True, special=False))\n"
    )
    env = dict(os.environ, LLAMA_CPP_LIB_PATH=str(runtime.lib_dir))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(gguf), text],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    tok = transformers.AutoTokenizer.from_pretrained(out)
    ids = tok(text)["input_ids"]
    assert ids == json.loads(proc.stdout)
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_small_vocabulary_ships_no_tokenizer(tmp_path: Path) -> None:
    spec = arch([(conv(), swiglu()), (attn(), swiglu())], vocab=200)
    result = export_hf(spec, StarModel(spec, device="cpu"), tmp_path / "hf")
    assert result.tokenizer == "none"
    assert set(result.files) == {"config.json", "generation_config.json", "model.safetensors"}
    assert load_hf(result.path).config.vocab_size == 200


def proxy_spec():  # noqa: ANN201
    return scale_spec(load_genome(LFM2).to_spec(), PROXY)


def test_cli_same_seed_gives_the_same_weights_as_gguf_and_star_nn(tmp_path: Path) -> None:
    args = ["export", str(LFM2), "--scale", "proxy", "--random-seed", "3", "--json"]
    hf = runner.invoke(app, [*args, "--format", "hf", "-o", str(tmp_path / "hf")])
    assert hf.exit_code == 0, hf.output
    info = json.loads(hf.stdout)
    assert info["architecture"] == "Lfm2ForCausalLM" and info["weights"] == "random (seed 3)"
    gguf = runner.invoke(app, [*args, "-o", str(tmp_path / "m.gguf")])
    assert gguf.exit_code == 0, gguf.output
    spec = proxy_spec()
    ours = StarModel(spec, device="cpu", seed=3).state_dict()
    tensors = load_file(tmp_path / "hf" / "model.safetensors")
    names = hf_name_map(spec)
    assert names and all(np.array_equal(tensors[h], ours[o].numpy()) for h, o in names.items())
    token_embd = next(
        t for t in GGUFReader(tmp_path / "m.gguf").tensors if t.name == "token_embd.weight"
    )
    assert np.array_equal(np.asarray(token_embd.data), tensors["model.embed_tokens.weight"])


def test_cli_checkpoint_exports_agree_between_formats(
    toks: list[int], runtime: RuntimeInfo, tmp_path: Path
) -> None:
    spec = proxy_spec()
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": randomize(StarModel(spec, device="cpu")).state_dict()}, ckpt)
    base = ["export", str(LFM2), "--scale", "proxy", "--weights", str(ckpt)]
    assert runner.invoke(app, [*base, "-o", str(tmp_path / "m.gguf")]).exit_code == 0
    result = runner.invoke(app, [*base, "--format", "hf", "-o", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    cpp = eval_logits(tmp_path / "m.gguf", toks, kv_type="f32", flash_attn=False)
    got = hf_logits(load_hf(tmp_path / "hf"), toks)
    assert np.abs(cpp).max() > 10
    assert max_diff(got, cpp) < HF_TOL


def test_cli_refuses_a_non_empty_folder_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["export", str(LFM2), "--scale", "proxy", "--format", "hf", "-o", str(out)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert "--output" in refused.output and "--force" in refused.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / "config.json").is_file() and (out / "notes.txt").read_text() == "mine"


def test_cli_refuses_an_unmappable_genome_and_quantised_types(tmp_path: Path) -> None:
    out = tmp_path / "hf"
    linear = GENOMES / "hybrid-linear-attn-350m.yaml"
    result = runner.invoke(
        app, ["export", str(linear), "--scale", "proxy", "--format", "hf", "-o", str(out)]
    )
    assert result.exit_code == 2
    assert "no transformers equivalent" in result.output and "linear_attention" in result.output
    assert not out.exists()
    q4 = runner.invoke(
        app, ["export", str(LFM2), "--format", "hf", "-o", str(out), "--quant", "q4_0"]
    )
    assert q4.exit_code == 2 and "--quant" in q4.output
    assert not out.exists()

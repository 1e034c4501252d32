"""Which architecture a spec exports to, and rejections that name the layer and the operator."""

from __future__ import annotations

from pathlib import Path

import pytest

from star.export import (
    UnsupportedGenome,
    check_exportable,
    export_gguf,
    supported_targets,
)
from star.genome import PROXY, load_genome, scale_spec
from star.genome.spec import ArchSpec, LinearAttentionSpec, Norm, Routing
from tests.conftest import GENOMES
from tests.export.export_specs import (
    SPECS,
    TARGET_OF,
    arch,
    attn,
    build_model,
    conv,
    mlp,
    moe,
    ssm,
    swiglu,
)

REFERENCE = {
    "lfm2-350m": "lfm2",
    "lfm2-350m-swa": "lfm2",
    "lfm2-700m": "lfm2",
    "lfm2-1.2b": "lfm2",
    "lfm2-2.6b": "lfm2",
    "lfm2-8b-a1b": "lfm2moe",
    "llama-3.2-1b": "llama",
    "mamba2-370m": "mamba2",
    "hybrid-ssm-attn-300m": "granitehybrid",
}


@pytest.mark.parametrize("scale", ["deploy", "proxy"])
@pytest.mark.parametrize("genome", sorted(REFERENCE))
def test_reference_genomes_map_to_their_runtime(genome: str, scale: str) -> None:
    path = GENOMES / f"{genome}.yaml"
    spec = load_genome(path).to_spec()
    if scale == "proxy":
        spec = scale_spec(spec, PROXY)
    assert check_exportable(spec).name == REFERENCE[genome]


def test_linear_attention_reference_genome_is_rejected() -> None:
    path = GENOMES / "hybrid-linear-attn-350m.yaml"
    with pytest.raises(UnsupportedGenome) as info:
        check_exportable(load_genome(path).to_spec())
    assert info.value.operator == "linear_attention"
    assert info.value.layer is not None


@pytest.mark.parametrize("key", sorted(SPECS))
def test_test_specs_map_to_their_target(key: str) -> None:
    assert check_exportable(SPECS[key]).name == TARGET_OF[key]


def _lfm2(*pairs):  # noqa: ANN002, ANN202
    return arch([(conv(), swiglu()), (attn(), swiglu()), *pairs])


REJECTED: dict[str, tuple[ArchSpec, int | None, str, str]] = {
    # name: (spec, layer, operator, a fragment of the reason)
    "linear attention": (
        _lfm2((LinearAttentionSpec(n_heads=4, head_dim=16), swiglu())),
        2,
        "linear_attention",
        "linear attention",
    ),
    "layernorm": (
        arch([(conv(), swiglu()), (attn(), swiglu())], norm=Norm.LAYERNORM),
        0,
        "layernorm",
        "RMSNorm",
    ),
    "short conv with mamba-2": (_lfm2((ssm(), None)), 2, "ssm", "mixes short conv"),
    "mlp in lfm2": (_lfm2((conv(), mlp())), 2, "mlp", "SwiGLU"),
    "lfm2 attention without qk-norm": (
        _lfm2((attn(qk_norm=False), swiglu())),
        2,
        "attention",
        "QK-norm",
    ),
    "two conv kernels": (_lfm2((conv(kernel=4), swiglu())), 2, "shortconv", "kernel"),
    "two ffn widths": (_lfm2((conv(), swiglu(96))), 2, "swiglu", "FFN width"),
    "q width != d_model in lfm2": (_lfm2((attn(hd=32), swiglu())), 2, "attention", "d_model"),
    "pure short conv": (arch([(conv(), swiglu())] * 3), None, "attention", "at least one"),
    "mixed window": (_lfm2((attn(window=8), swiglu())), 2, "attention", "sliding window"),
    "softmax moe": (
        _lfm2((conv(), moe(routing=Routing.SOFTMAX, bias=False))),
        2,
        "moe",
        "sigmoid",
    ),
    "dense after moe": (
        arch([(conv(), moe()), (attn(), swiglu())]),
        1,
        "swiglu",
        "before the first MoE",
    ),
    "swa in lfm2moe": (
        arch([(conv(), moe()), (attn(window=8), moe())]),
        1,
        "swa",
        "sliding-window",
    ),
    "moe in pure attention": (arch([(attn(), moe())] * 2), 0, "moe", "SwiGLU"),
    "swa in qwen3": (arch([(attn(window=8), swiglu())] * 2), 0, "swa", "sliding-window"),
    "mixed qk-norm": (
        arch([(attn(), swiglu()), (attn(qk_norm=False), swiglu())]),
        1,
        "attention",
        "QK-norm",
    ),
    "per-layer kv in llama": (
        arch([(attn(qk_norm=False), swiglu()), (attn(kv=4, qk_norm=False), swiglu())]),
        1,
        "attention",
        "KV head count",
    ),
    "qk-norm attention in granitehybrid": (
        arch([(ssm(groups=1), swiglu()), (attn(), swiglu())]),
        1,
        "attention",
        "QK-norm",
    ),
    "granitehybrid d_inner": (
        arch([(ssm(hd=8), swiglu()), (attn(qk_norm=False), swiglu())]),
        0,
        "ssm",
        "d_inner == 2 * d_model",
    ),
    "mamba-2 + swiglu without attention": (
        arch([(ssm(), swiglu())] * 2),
        None,
        "ssm",
        "at least one attention",
    ),
    "mlp in granitehybrid": (
        arch([(ssm(groups=1), mlp()), (attn(qk_norm=False), swiglu())]),
        0,
        "mlp",
        "SwiGLU",
    ),
    "two ssm shapes": (arch([(ssm(), None), (ssm(state=32), None)]), 1, "ssm", "SSM shape"),
    "mlp with attention": (
        arch([(ssm(), mlp()), (attn(qk_norm=False), mlp())]),
        0,
        "mlp",
        "nemotron_h",
    ),
    "mamba-2 without ffn beside attention": (
        arch([(ssm(groups=1), None), (attn(qk_norm=False), swiglu())]),
        0,
        "none",
        "mamba2",
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_unsupported_genome_names_layer_and_operator(case: str) -> None:
    spec, layer, operator, fragment = REJECTED[case]
    with pytest.raises(UnsupportedGenome) as info:
        check_exportable(spec)
    err = info.value
    assert (err.layer, err.operator) == (layer, operator), str(err)
    assert fragment in err.reason
    where = f"layer {layer}" if layer is not None else "model"
    assert str(err).startswith(f"{where} ({operator})")


def test_unsupported_genome_writes_no_file(tmp_path: Path) -> None:
    spec = REJECTED["linear attention"][0]
    from star.nn import StarModel

    model = StarModel(spec, device="cpu")
    out = tmp_path / "model.gguf"
    with pytest.raises(UnsupportedGenome):
        export_gguf(spec, model, out)
    assert list(tmp_path.iterdir()) == []


def test_nemotron_h_gets_ssm_mlp_stacks_and_rejects_attention() -> None:
    assert check_exportable(arch([(ssm(), mlp()), (ssm(), None)])).name == "nemotron_h"
    assert check_exportable(arch([(ssm(), None)] * 2)).name == "mamba2"
    spec = arch([(ssm(), mlp()), (attn(qk_norm=False), mlp())])
    with pytest.raises(UnsupportedGenome) as info:
        check_exportable(spec)
    # attention present -> granitehybrid is tried; it names the MLP it cannot run
    assert info.value.target == "granitehybrid"


def test_supported_targets_describe_themselves() -> None:
    targets = supported_targets()
    assert [t.name for t in targets] == [
        "lfm2",
        "lfm2moe",
        "qwen3",
        "llama",
        "mamba2",
        "granitehybrid",
        "nemotron_h",
    ]
    for t in targets:
        d = t.to_dict()
        assert d["token_mixers"] and d["channel_mixers"] and d["constraints"]
        assert d["norms"] == ["rmsnorm"]


def test_shared_weights_are_exportable() -> None:
    spec = SPECS["lfm2"]
    assert spec.weight_owner(3) == 0
    model = build_model(spec)
    assert model.layers[3].mixer is model.layers[0].mixer
    assert check_exportable(spec).name == "lfm2"

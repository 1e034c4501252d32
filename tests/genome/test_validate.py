"""Validation names every problem with its field path; the CLI-facing messages are exact."""

from __future__ import annotations

import copy

import pytest

from star.genome import Genome, InvalidGenome, load_genome, validate_vector
from star.genome.encoding import VECTOR_LENGTH, operator_index
from tests.conftest import GENOMES

BASE = load_genome(GENOMES / "lfm2-350m.yaml").to_dict()


def problems_of(doc: object) -> list[str]:
    with pytest.raises(InvalidGenome) as info:
        Genome.from_dict(doc)
    return [str(p) for p in info.value.problems]


def edited(**changes: object) -> dict:
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = doc
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return doc


def test_valid_base() -> None:
    assert Genome.from_dict(copy.deepcopy(BASE)).to_spec().n_layers == 16


def test_unknown_operator_class() -> None:
    doc = edited(operators__attention_swiglu__token_mixer="transformer")
    (msg,) = problems_of(doc)
    assert msg.startswith("operators.attention_swiglu.token_mixer: unknown value 'transformer'")


def test_kv_heads_must_divide_heads() -> None:
    doc = edited(operators__attention_swiglu__featurizer__kv_heads=5)
    assert problems_of(doc) == [
        "operators.attention_swiglu.featurizer.kv_heads: 5 KV heads must divide 16 heads"
    ]


def test_every_problem_is_reported_at_once() -> None:
    doc = edited(
        operators__attention_swiglu__featurizer__kv_heads=5,
        operators__shortconv_swiglu__featurizer__ffn_dim=1000,
        model__d_model=100,
    )
    msgs = problems_of(doc)
    assert any(m.startswith("model.d_model: 100 must be a multiple of 64") for m in msgs)
    assert any(m.startswith("operators.shortconv_swiglu.featurizer.ffn_dim: 1000") for m in msgs)
    assert len(msgs) == 2  # structure is checked once every value parses


def test_out_of_bounds_names_path_and_range() -> None:
    doc = edited(operators__shortconv_swiglu__featurizer__conv_kernel=40)
    assert problems_of(doc) == [
        "operators.shortconv_swiglu.featurizer.conv_kernel: 40 is outside [2, 8]"
    ]


def test_unknown_layer_reference_and_fields() -> None:
    doc = edited(backbone__layers=["shortconv_swiglu", "nope"], model__colour="red")
    msgs = problems_of(doc)
    assert "model.colour: unknown field" in msgs
    assert any(m.startswith("backbone.layers[1]: unknown operator 'nope'") for m in msgs)


def test_missing_and_inactive_featurizer_fields() -> None:
    doc = edited(operators__shortconv_swiglu__featurizer={"conv_kernel": 3, "heads": 4})
    msgs = problems_of(doc)
    assert ("operators.shortconv_swiglu.featurizer.ffn_dim: required by shortconv + swiglu"
            in msgs)
    assert "operators.shortconv_swiglu.featurizer.heads: not used by shortconv + swiglu" in msgs


def test_moe_rules() -> None:
    doc = load_genome(GENOMES / "lfm2-8b-a1b.yaml").to_dict()
    name = next(n for n, o in doc["operators"].items() if o["channel_mixer"] == "moe")
    doc["operators"][name]["featurizer"]["experts"] = 8
    doc["operators"][name]["featurizer"]["top_k"] = 12
    doc["operators"][name]["featurizer"]["routing"] = "softmax"
    msgs = problems_of(doc)
    assert f"operators.{name}.featurizer.top_k: top_k 12 exceeds 8 experts" in msgs
    assert f"operators.{name}.featurizer.expert_bias: expert bias needs sigmoid routing" in msgs


def test_share_group_must_hold_one_operator() -> None:
    doc = copy.deepcopy(BASE)
    doc["backbone"]["share"] = [1, 1, 1] + [0] * 13  # layers 0,1 conv; layer 2 attention
    msgs = problems_of(doc)
    assert msgs == ["backbone.share[2]: group 1 mixes operators (layer 0 and layer 2 differ)"]


def test_not_a_mapping_and_bad_yaml(tmp_path) -> None:
    assert problems_of([1, 2]) == ["genome: must be a mapping with model, operators, backbone"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(InvalidGenome, match="not valid YAML"):
        load_genome(bad)


def test_vector_problems_use_index_paths() -> None:
    vec = list(load_genome(GENOMES / "lfm2-350m.yaml").genes)
    vec[operator_index(1, "kv_heads")] = 3
    vec[0] = 0
    problems = validate_vector(vec)
    assert [p.path for p in problems] == ["model.d_model"]  # bounds first
    vec[0] = 16
    assert [str(p) for p in validate_vector(vec)] == [
        "operators[1].featurizer.kv_heads: 3 KV heads must divide 16 heads"
    ]
    assert validate_vector([1, 2, 3])[0].message.endswith(f"expected {VECTOR_LENGTH}")

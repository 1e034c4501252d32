"""Width-aware (muP) proxy training: which matrices it scales, that it changes nothing at
``d_model`` widths, and that it removes the standard parametrization's penalty on wide FFNs."""

from __future__ import annotations

import statistics
from dataclasses import replace

import pytest
import torch

from star.genome import TINY, load_genome, scale_spec
from star.genome.spec import ArchSpec, FFNSpec, LayerSpec
from star.nn import StarModel
from star.proxy import ProxyConfig, TaskParams
from star.proxy.train import train_proxy
from star.proxy.width import param_groups, scale_readout_init, width_multiplier
from tests.conftest import GENOMES


def conv_stack(ffn_dim: int, n_layers: int = 4) -> ArchSpec:
    """LFM2-350M's short-conv layer ``n_layers`` times at TINY width (d_model 64), FFN ``ffn_dim``
    (at TINY width)."""
    base = load_genome(GENOMES / "lfm2-350m.yaml").to_spec()
    tiny = scale_spec(replace(base, layers=(base.layers[0],) * n_layers), TINY)
    layers: list[LayerSpec] = []
    for i, layer in enumerate(tiny.layers):
        assert isinstance(layer.channel, FFNSpec)
        layers.append(replace(layer, index=i, channel=replace(layer.channel, ffn_dim=ffn_dim)))
    return replace(tiny, name=f"conv-ffn{ffn_dim}", layers=tuple(layers))


def test_only_matrices_reading_a_wider_space_into_the_stream_are_scaled() -> None:
    model = StarModel(conv_stack(256), device="meta")
    scaled = {
        name: width_multiplier(p, 64) for name, p in model.named_parameters()
        if width_multiplier(p, 64) != 1.0
    }
    assert scaled and all(name.endswith("ffn.down.weight") for name in scaled), scaled
    assert set(scaled.values()) == {64 / 256}
    # the embedding (V, d), the conv kernel (d, 1, L), in/out projections (fan-in d): unscaled
    assert width_multiplier(model.embed.weight, 64) == 1.0
    assert width_multiplier(torch.empty(64, 1, 3), 64) == 1.0
    assert width_multiplier(torch.empty(4, 64, 256), 64) == 64 / 256  # MoE experts (E, d, ff)


def test_readout_init_and_learning_rate_shrink_by_the_same_multiplier() -> None:
    spec = conv_stack(256)
    model = StarModel(spec, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    scale_readout_init(model, 64)
    for name, p in model.named_parameters():
        expected = before[name] * (0.25 if name.endswith("ffn.down.weight") else 1.0)
        assert torch.equal(p.detach(), expected), name
    groups = param_groups([model], 64, lr=3e-3, weight_decay=0.1, width_aware=True)
    by_lr = {g["lr"]: g for g in groups}
    readouts = {id(p) for n, p in model.named_parameters() if n.endswith("ffn.down.weight")}
    assert {id(p) for p in by_lr[3e-3 * 0.25]["params"]} == readouts
    vectors = [g for g in groups if g["weight_decay"] == 0.0]
    assert all(p.ndim == 1 for g in vectors for p in g["params"])  # no decay on norms
    flat = param_groups([model], 64, lr=3e-3, weight_decay=0.1, width_aware=False)
    assert {g["lr"] for g in flat} == {3e-3}


MEMO = {"memorization": TaskParams(seq_len=32)}


def test_a_model_without_wider_inner_widths_trains_identically_in_both_parametrizations() -> None:
    spec = conv_stack(64, n_layers=2)  # FFN = d_model: no readout matrix to scale
    results = [
        train_proxy(spec, ProxyConfig(tasks=("memorization",), task_params=MEMO, steps=8,
                                      parametrization=p), seed=0)
        for p in ("mup", "standard")
    ]
    mup, standard = (r.tasks["memorization"] for r in results)
    assert mup.test_loss == standard.test_loss and mup.accuracy == standard.accuracy


@pytest.mark.slow
def test_mup_lets_a_wide_ffn_learn_as_fast_as_a_narrow_one_where_standard_falls_behind() -> None:
    """Memorization (127 facts, 16 per sequence), 40 steps at the default lr, two seeds: measured
    standard 0.99 (FFN 128) vs 0.05 (FFN 576), muP 1.00 vs 1.00."""

    def accuracy(ffn_dim: int, parametrization: str) -> float:
        config = ProxyConfig(tasks=("memorization",), task_params=MEMO, steps=40,
                             parametrization=parametrization)
        return statistics.mean(
            train_proxy(conv_stack(ffn_dim), config, seed=s).tasks["memorization"].accuracy
            for s in (0, 1)
        )

    narrow, wide = 128, 576
    assert accuracy(narrow, "standard") > accuracy(wide, "standard") + 0.5
    assert accuracy(wide, "mup") > accuracy(narrow, "mup") - 0.05
    assert accuracy(wide, "mup") > 0.9

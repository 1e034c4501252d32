"""Textbook orderings a trustworthy proxy must reproduce at its default budget.

- In-context recall: models with attention beat attention-free short-conv models of the same
  size (a kernel-3 conv cannot look a key up further back than 2 tokens).
- Memorization: wider channel mixers should beat narrower ones (more room for the facts). At the
  default budget this does NOT hold, and cannot at MAD's task size: the ordering is about
  capacity, and 127 single-token facts never fill a d_model-64 model's capacity. Measured (4 conv
  layers, seq 32): even an FFN of width 8 learns the whole table in 40 steps (0.995 accuracy),
  and 256 two-token facts (conjunctions, which a linear path cannot store) were learned to the
  same 0.50-0.54 in 60 steps by FFN 32, 128 and 576. What width decided in the standard
  parametrization was learning *speed*, the wrong way round (FFN 128 0.99 vs FFN 576 0.05 after
  40 steps): width-aware (muP) training removed that (1.00 vs 1.00; tests/proxy/test_width.py),
  and at the default 20 steps both widths stay at chance (0.012 vs 0.019 over 4 seeds, chance
  0.008). The ordering appears only where the table takes hundreds of steps (9,216 two-token
  facts, 800 steps: FFN 576 0.49 vs FFN 128 0.04 with muP, reversed without). Memorization
  therefore has weight 0 in the default objective; the test stays,
  strict-xfail, so the day it holds it says so.

Models: LFM2-350M's operators at the search's default proxy width (d_model 64, byte vocabulary),
four layers, as ``bench/proxy_fidelity.py`` builds its zoo. Each claim is checked on the mean over
two seeds with a margin, so it is not a coin flip.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

import pytest

from star.genome import TINY, load_genome, scale_spec
from star.genome.spec import ArchSpec, FFNSpec, LayerSpec
from star.proxy import ProxyConfig
from star.proxy.train import train_proxy
from tests.conftest import GENOMES

SEEDS = (0, 1)


def lfm2_variant(code: str, ffn_dim: int | None = None) -> ArchSpec:
    """LFM2-350M's conv (C) and attention (A) layers in the order of ``code``, at TINY width."""
    base = load_genome(GENOMES / "lfm2-350m.yaml").to_spec()
    table = {"C": base.layers[0], "A": base.layers[2]}
    layers: list[LayerSpec] = []
    for i, c in enumerate(code):
        layer = replace(table[c], index=i)
        if ffn_dim is not None:
            assert isinstance(layer.channel, FFNSpec)
            layer = replace(layer, channel=replace(layer.channel, ffn_dim=ffn_dim))
        layers.append(layer)
    return scale_spec(replace(base, name=code, layers=tuple(layers)), TINY)


def n_params(spec: ArchSpec) -> int:
    from star.nn import StarModel

    return sum(p.numel() for p in StarModel(spec, device="meta").parameters())


def mean_accuracy(spec: ArchSpec, task: str) -> float:
    config = ProxyConfig().model_copy(update={"tasks": (task,)})
    accs = []
    for seed in SEEDS:
        result = train_proxy(spec, config, seed=seed)
        assert result.ok, result.error
        accs.append(result.tasks[task].accuracy)
    return statistics.mean(accs)


def test_attention_beats_short_conv_on_in_context_recall_at_the_default_budget() -> None:
    with_attention = lfm2_variant("CACA")
    conv_only = lfm2_variant("CCCC")
    p_attn, p_conv = n_params(with_attention), n_params(conv_only)
    assert abs(p_attn - p_conv) < 0.05 * p_conv, (p_attn, p_conv)  # the same size
    attn, conv = (mean_accuracy(s, "in_context_recall") for s in (with_attention, conv_only))
    chance = 1 / 8  # 16 tokens: 8 keys, 8 values
    assert conv < 1.5 * chance, conv  # the conv model cannot recall: it guesses
    assert attn > conv + 0.05, (attn, conv)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="at the default budget no model fills its capacity with "
                   "MAD's 127 facts, so width cannot show: see the module docstring")
def test_wider_channel_mixers_beat_narrower_on_memorization_at_the_default_budget() -> None:
    narrow = lfm2_variant("CCCC", ffn_dim=2048)  # 128 at d_model 64
    wide = lfm2_variant("CCCC", ffn_dim=9216)  # 576 at d_model 64
    assert mean_accuracy(wide, "memorization") > mean_accuracy(narrow, "memorization") + 0.05

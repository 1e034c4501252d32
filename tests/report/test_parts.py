"""The report's rules on their own: layer strips of the reference genomes (checked against the
published layer layouts in FACTS.md), when a difference is a tie, verdicts, and the proxy
loss's standard error."""

from __future__ import annotations

import math

import pytest

from star.genome import load_genome
from star.report.compare import outcome, verdict
from star.report.model import Figure
from star.report.quality import proxy_loss_spread
from star.report.strip import block_colours, blocks, channel_pattern, layer_pattern, mix_summary
from star.report.svg import Axis
from tests.conftest import GENOMES


def test_strips_of_reference_genomes_put_attention_where_the_published_configs_do() -> None:
    lfm2 = load_genome(GENOMES / "lfm2-350m.yaml").to_spec()
    pattern = layer_pattern(lfm2)
    assert [i for i, c in enumerate(pattern) if c == "A"] == [2, 5, 8, 10, 12, 14]
    assert mix_summary(lfm2) == "16 layers (10 conv + 6 attn)"
    moe = load_genome(GENOMES / "lfm2-8b-a1b.yaml").to_spec()
    assert [i for i, c in enumerate(layer_pattern(moe)) if c == "A"] == [2, 6, 10, 14, 18, 21]
    assert channel_pattern(moe) == "FF" + "E" * 22  # first two layers dense, then MoE
    assert mix_summary(moe).endswith("; 22 MoE)")
    mamba = load_genome(GENOMES / "mamba2-370m.yaml").to_spec()
    assert set(layer_pattern(mamba)) == {"S"} and set(channel_pattern(mamba)) == {"-"}
    # the stored form (asdict, as candidates keep it) draws the same strip
    from dataclasses import asdict

    assert layer_pattern(asdict(lfm2)) == pattern
    colours = block_colours(lfm2)
    assert len(colours) == 16 and colours[2][0] != colours[0][0]  # attention vs conv fill
    assert "kernel 3" in blocks(lfm2)[0].title and "8 KV heads" in blocks(lfm2)[2].title


def test_a_difference_within_both_spreads_is_a_tie() -> None:
    assert outcome(Figure(10.0, 1.0), Figure(11.5, 0.6)) == "tie"  # 1.5 <= 1.0 + 0.6
    assert outcome(Figure(10.0, 1.0), Figure(11.7, 0.6)) == "better"
    assert outcome(Figure(11.7, 1.0), Figure(10.0, 0.6)) == "worse"
    assert outcome(Figure(100.0), Figure(100.0)) == "tie"  # no spread: equal only
    assert outcome(Figure(100.0), Figure(100.5)) == "better"
    assert outcome(Figure(math.inf), Figure(5.0)) == "worse"  # OOM loses
    assert outcome(Figure(None), Figure(5.0)) == "n/a"


def test_verdict_needs_a_win_beyond_noise_and_no_loss() -> None:
    assert verdict(["better", "tie", "tie"]) == "dominates"
    assert verdict(["tie", "tie"]) == "tie"
    assert verdict(["better", "worse"]) == "trade-off"
    assert verdict(["worse", "tie"]) == "dominated"
    assert verdict(["better", "n/a"]) == "incomplete"


def test_proxy_loss_spread_is_the_binomial_error_of_the_held_out_accuracy() -> None:
    task = {"accuracy": 0.5, "n_test": 96}
    se, how = proxy_loss_spread({"quality": 0.5, "tasks": {"in_context_recall": task}})
    p = (0.5 * 96 + 2) / 100  # Agresti-Caffo: two successes and two failures added
    assert se == pytest.approx(math.sqrt(p * (1 - p) / 100))
    assert "binomial" in how
    # with a text term the loss is the mean of two terms: half the MAD error, and it says the
    # text term's spread is unknown
    se2, how2 = proxy_loss_spread({"quality": 0.5, "tasks": {"in_context_recall": task},
                                   "text": {"val_loss": 3.0}})
    assert se2 == pytest.approx(se / 2) and "not recorded" in how2
    perfect, _ = proxy_loss_spread({"quality": 0.0,
                                    "tasks": {"in_context_recall": {"accuracy": 1.0,
                                                                    "n_test": 32}}})
    assert perfect is not None and perfect > 0  # a perfect score is not a certainty
    assert proxy_loss_spread({"quality": None}) == (None, "no proxy quality")


def test_axes_turn_logarithmic_only_for_wide_ranges() -> None:
    assert not Axis(1.0, 10.0, 0, 100).log
    wide = Axis(1.0, 1000.0, 0, 100)
    assert wide.log and wide(10.0) == pytest.approx((wide(1.0) + wide(100.0)) / 2)
    assert 100.0 in wide.ticks() and 200.0 in wide.ticks()

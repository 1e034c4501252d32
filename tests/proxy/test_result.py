"""What quality means: weighted components, default weights, and their description."""

from __future__ import annotations

import math

import pytest

from star.proxy import ProxyConfig
from star.proxy.result import ProxyResult, TaskMetrics, TextMetrics, aggregate, describe_quality


def task(name: str, accuracy: float, loss: float = 1.0, chance: float = 0.125) -> TaskMetrics:
    return TaskMetrics(task=name, accuracy=accuracy, chance=chance, test_loss=loss,
                       train_loss_first=2.0, train_loss_last=1.0, steps=10, tokens=100,
                       wall_time_s=0.1, vocab_size=16, seq_len=32, n_train=64, n_test=64)


def text(loss: float) -> TextMetrics:
    return TextMetrics(val_loss=loss, perplexity=math.exp(loss), bits_per_byte=1.5,
                       train_loss_first=5.0, train_loss_last=3.0, steps=10, tokens=100,
                       wall_time_s=0.1, vocab_size=256, seq_len=64, source="english:x",
                       train_bytes=1, val_tokens=10, tokenizer_path="t.json")


def test_default_weights_keep_the_old_mad_plus_text_mean_and_leave_memorization_out() -> None:
    tasks = {"in_context_recall": task("in_context_recall", 0.8),
             "compression": task("compression", 0.4), "memorization": task("memorization", 0.1)}
    agg = aggregate(tasks, text(2.0))
    expected = ((1 - (0.8 + 0.4) / 2) + 2.0 / math.log(256)) / 2
    assert agg.quality_loss == pytest.approx(expected)
    weights = {c.name: c.weight for c in agg.components}
    assert weights["memorization"] == 0 and sum(weights.values()) == pytest.approx(1.0)


def test_configured_weights_and_loss_scoring_change_the_objective() -> None:
    tasks = {"in_context_recall": task("in_context_recall", 0.5, loss=math.log(8) / 2)}
    only_text = aggregate(tasks, text(2.0), {"in_context_recall": 0.0})
    assert only_text.quality_loss == pytest.approx(2.0 / math.log(256))
    by_loss = aggregate(tasks, None, score="loss")
    assert by_loss.quality_loss == pytest.approx(0.5)  # answer loss / ln(8 answers)
    assert by_loss.components[0].metric == "answer_loss"
    assert aggregate({"memorization": task("memorization", 0.9)}, None).quality_loss is None


def test_negative_weights_are_rejected_by_the_config() -> None:
    with pytest.raises(ValueError, match="weights must be >= 0"):
        ProxyConfig(weights={"text": -1.0})


def test_description_names_objective_direction_and_each_term_from_stored_json() -> None:
    agg = aggregate({"in_context_recall": task("in_context_recall", 0.75)}, text(2.0),
                    {"text": 3.0, "in_context_recall": 1.0})
    result = ProxyResult(name="g", seed=0, **agg._asdict())
    lines = describe_quality(result.model_dump(mode="json"))
    assert lines == describe_quality(result)
    assert lines[0] == f"proxy_loss ↓ {agg.quality_loss:.4g}"
    assert lines[1].startswith("  0.25 x in_context_recall: accuracy 0.75 (↑) -> term 0.250")
    assert lines[2].startswith("  0.75 x text: perplexity 7.389 (↓)")
    failed = describe_quality(ProxyResult.failed("g", 0, "diverged"))
    assert failed == ["proxy_loss ↓ n/a (failed: diverged)"]

"""train_proxy on LFM2-350M at TINY width: it learns, it is deterministic, it fails cleanly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from star.genome.spec import ArchSpec
from star.proxy import ProxyConfig, ProxyResult, TaskParams, TextSettings
from star.proxy.train import ProxyConfigError, train_proxy

# Memorization with 7 keys is a lookup the model learns in a few dozen steps on CPU.
EASY = ProxyConfig(
    tasks=("memorization",),
    task_params={"memorization": TaskParams(vocab_size=16, seq_len=16, n_train=128, n_test=64)},
    steps=40, batch_size=16, lr=1e-2, warmup_frac=0.1,
)


def small_mix(cache_dir: Path, **kw: object) -> ProxyConfig:
    """Every kind of component (LM task, auto-encoder task, text) at a few steps."""
    base: dict[str, object] = {
        "tasks": ("in_context_recall", "compression", "text"), "scale": 0.02, "steps": 4,
        "batch_size": 8, "eval_batch_size": 64, "lr": 3e-3,
        "task_params": {"in_context_recall": {"n_test": 32}, "compression": {"n_test": 32}},
        "text": TextSettings(max_bytes=64 * 1024, seq_len=32, max_val_windows=8,
                             cache_dir=cache_dir),
    }
    base.update(kw)
    return ProxyConfig.model_validate(base)


def metrics(r: ProxyResult) -> dict[str, object]:
    """The result without timings (which vary run to run)."""
    drop = {"wall_time_s", "cpu_time_s", "tokens_per_s"}
    doc = r.model_dump(exclude=drop)
    for m in doc["tasks"].values():
        m.pop("wall_time_s")
        m.pop("cpu_time_s")
    if doc["text"]:
        doc["text"].pop("wall_time_s")
        doc["text"].pop("cpu_time_s")
    return doc


def test_tiny_model_learns_an_easy_task(tiny_spec: ArchSpec) -> None:
    r = train_proxy(tiny_spec, EASY, seed=0)
    assert r.ok, r.error
    m = r.tasks["memorization"]
    assert m.steps == 40 and r.steps == 40
    assert m.train_loss_last < 0.5 * m.train_loss_first
    assert m.accuracy > max(0.5, 3 * m.chance), m
    assert r.memorization_accuracy == m.accuracy
    assert r.mad_accuracy is None and r.quality_loss is None  # memorization is a screen only
    assert r.tokens_per_s > 0 and r.device == "cpu"


def test_same_seed_same_metrics_all_component_kinds(tiny_spec: ArchSpec, cache_dir: Path) -> None:
    cfg = small_mix(cache_dir)
    a = train_proxy(tiny_spec, cfg, seed=3)
    b = train_proxy(tiny_spec, cfg, seed=3)
    assert a.ok and b.ok, (a.error, b.error)
    assert metrics(a) == metrics(b)
    assert set(a.tasks) == {"in_context_recall", "compression"} and a.text is not None
    assert a.text.perplexity == pytest.approx(math.exp(a.text.val_loss))
    assert 0 < a.text.bits_per_byte < 16
    expected = ((1 - a.mad_accuracy) + a.text.val_loss / math.log(256)) / 2
    assert a.quality_loss == pytest.approx(expected)
    c = train_proxy(tiny_spec, cfg, seed=4)
    assert metrics(c) != metrics(a)


def test_divergence_is_a_failed_result_not_an_exception(tiny_spec: ArchSpec) -> None:
    cfg = EASY.model_copy(update={"lr": 1e6, "steps": 12, "warmup_frac": 0.0})
    r = train_proxy(tiny_spec, cfg, seed=0)
    assert not r.ok and "not finite" in (r.error or "")
    assert r.quality_loss is None


def test_config_mistakes_raise_before_training(tiny_spec: ArchSpec) -> None:
    from dataclasses import replace

    with pytest.raises(ProxyConfigError, match=r"memorization\.vocab_size: 256 exceeds"):
        train_proxy(replace(tiny_spec, vocab_size=128),
                    ProxyConfig(tasks=("memorization",), scale=0.05), seed=0)
    with pytest.raises(ProxyConfigError, match="text"):
        train_proxy(replace(tiny_spec, vocab_size=128), ProxyConfig(tasks=("text",)), seed=0)


def test_weights_saved_and_wall_time_budget(tiny_spec: ArchSpec, tmp_path: Path) -> None:
    import torch

    from star.nn import StarModel

    cfg = EASY.model_copy(update={"steps": 10_000, "wall_time_s": 1.0})
    r = train_proxy(tiny_spec, cfg, seed=0, weights_path=tmp_path / "w.pt")
    assert r.ok and r.stopped_early and 0 < r.steps < 10_000
    assert r.weights_task == "memorization" and r.weights_path == str(tmp_path / "w.pt")
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    model = StarModel(tiny_spec)
    model.load_state_dict(state)

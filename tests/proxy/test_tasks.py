"""MAD-style task generators: shapes, answer masks, determinism, held-out disjointness, and that
each task is solvable exactly as its docstring defines it."""

from __future__ import annotations

import numpy as np
import pytest

from star.proxy.config import MAD_TASKS, ProxyConfig, TaskParams
from star.proxy.tasks import (
    DEFAULTS,
    IGNORE,
    TaskConfigError,
    TaskDef,
    build_task,
    memorization_map,
    resolve_task,
)

SCALE = 0.05


def fresh(task: TaskDef, seed: int = 0):
    build_task.cache_clear()
    return build_task(task, seed)


@pytest.mark.parametrize("name", MAD_TASKS)
def test_shapes_masks_determinism_and_disjoint_test_set(name: str) -> None:
    task = resolve_task(name, None, SCALE)
    split = fresh(task)
    for x, y, n in ((split.train_inputs, split.train_targets, task.n_train),
                    (split.test_inputs, split.test_targets, task.n_test)):
        assert x.shape == y.shape == (n, task.seq_len)
        assert x.dtype == y.dtype == np.int64
        assert x.min() >= 0 and x.max() < task.vocab_size
        answers = y != IGNORE
        assert ((y[answers] >= 0) & (y[answers] < task.vocab_size)).all()
        assert answers.any(axis=1).all(), "every example asks at least one question"
        assert answers.mean() < 1.0
    again = fresh(task)
    for a, b in zip((split.train_inputs, split.train_targets, split.test_inputs),
                    (again.train_inputs, again.train_targets, again.test_inputs), strict=True):
        np.testing.assert_array_equal(a, b)
    other = fresh(task, seed=1)
    assert not np.array_equal(split.train_inputs, other.train_inputs)
    train_rows = {row.tobytes() for row in split.train_inputs}
    assert not any(row.tobytes() in train_rows for row in split.test_inputs)
    assert not split.train_inputs.flags.writeable


def test_defaults_are_the_mad_baselines() -> None:
    d = {name: resolve_task(name) for name in MAD_TASKS}
    assert (d["in_context_recall"].vocab_size, d["in_context_recall"].seq_len) == (16, 128)
    assert d["in_context_recall"].n_train == 12_800 and d["in_context_recall"].n_test == 1_280
    assert d["fuzzy_recall"].motif_size == 3
    assert (d["noisy_recall"].vocab_size, d["noisy_recall"].noise_vocab_size,
            d["noisy_recall"].frac_noise) == (32, 16, 0.2)
    assert (d["selective_copying"].seq_len, d["selective_copying"].n_copy) == (256, 16)
    assert (d["compression"].seq_len, d["compression"].head) == (32, "autoencoder")
    assert (d["memorization"].vocab_size, d["memorization"].seq_len,
            d["memorization"].n_train) == (256, 32, 256)
    assert d == DEFAULTS


def test_scale_shrinks_examples_and_sequences_with_floors() -> None:
    t = resolve_task("selective_copying", None, 0.05)
    assert t.n_train == 640 and t.n_test == 64
    assert t.seq_len < 256 and t.n_copy < 16 and t.seq_len > 2 * t.n_copy + 1
    assert resolve_task("memorization", None, 0.05).n_train == 256  # already tiny: kept
    explicit = resolve_task("in_context_recall", TaskParams(seq_len=20, n_train=10), 0.05)
    assert (explicit.seq_len, explicit.n_train) == (20, 10)


@pytest.mark.parametrize(("name", "params", "field"), [
    ("selective_copying", TaskParams(seq_len=20, n_copy=16), "seq_len"),
    ("in_context_recall", TaskParams(seq_len=31), "seq_len"),
    ("noisy_recall", TaskParams(noise_vocab_size=0), "noise_vocab_size"),
    ("fuzzy_recall", TaskParams(vocab_size=6), "vocab_size"),
])
def test_bad_settings_name_the_field(name: str, params: TaskParams, field: str) -> None:
    with pytest.raises(TaskConfigError, match=rf"task_params\.{name}\.{field}"):
        resolve_task(name, params)


def test_unknown_task_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="tasks"):
        ProxyConfig(tasks=("recall",))  # type: ignore[arg-type]


# ---- solvable as defined ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["in_context_recall", "noisy_recall"])
def test_recall_answer_is_the_value_of_that_key_earlier(name: str) -> None:
    task = resolve_task(name, None, SCALE)
    split = fresh(task)
    k = (task.vocab_size - task.noise_vocab_size) // 2
    for x, y in zip(split.test_inputs, split.test_targets, strict=True):
        last: dict[int, int] = {}
        for t in range(0, task.seq_len, 2):
            key, value = int(x[t]), int(x[t + 1])
            if key >= 2 * k:  # a noise pair
                assert y[t] == IGNORE and value >= 2 * k
                continue
            assert key < k <= value < 2 * k
            if key in last:
                assert y[t] == value == last[key]
            else:
                assert y[t] == IGNORE
            last[key] = value
        assert y[task.seq_len - 2] != IGNORE  # the final pair always repeats a key


def test_fuzzy_recall_answers_are_values_of_repeated_key_motifs() -> None:
    task = resolve_task("fuzzy_recall", None, SCALE)
    split = fresh(task)
    k, pad = (task.vocab_size - 1) // 2, task.vocab_size - 1
    for test, (xs, ys) in ((False, (split.train_inputs, split.train_targets)),
                           (True, (split.test_inputs, split.test_targets))):
        for x, y in zip(xs, ys, strict=True):
            tokens = [*x.tolist(), int(y[-1])]  # the final answer completes the sequence
            start = next(i for i, tok in enumerate(tokens) if tok != pad)
            assert all(tok == pad for tok in tokens[:start])
            assert (y[: max(0, start - 1)] == IGNORE).all()
            runs: list[list[int]] = []  # alternating key / value motifs (by vocabulary)
            for tok in tokens[start:]:
                kind = tok < k
                if runs and (runs[-1][0] < k) == kind:
                    runs[-1].append(tok)
                else:
                    runs.append([tok])
            assert len(runs) % 2 == 0 and all(r[0] < k for r in runs[0::2])
            seen: dict[tuple[int, ...], tuple[int, ...]] = {}
            pos = start
            for key, value in zip(runs[0::2], runs[1::2], strict=True):
                assert len(key) <= task.motif_size and len(value) <= task.motif_size
                if test:
                    assert len(key) == task.motif_size  # held-out keys: full motifs
                asked = y[pos + len(key) - 1: pos + len(key) + len(value) - 1]
                if tuple(key) in seen:
                    assert seen[tuple(key)] == tuple(value)
                    assert asked.tolist() == value
                else:
                    assert (asked == IGNORE).all()
                seen[tuple(key)] = tuple(value)
                pos += len(key) + len(value)
            assert y[-1] != IGNORE


def test_selective_copying_answers_are_the_data_tokens_in_order() -> None:
    task = resolve_task("selective_copying", None, SCALE)
    split = fresh(task)
    blank, copy = task.vocab_size - 2, task.vocab_size - 1
    region = task.seq_len - task.n_copy - 1
    for x, y in zip(split.test_inputs, split.test_targets, strict=True):
        data = [int(t) for t in x[:region] if t != blank]
        assert len(data) == task.n_copy and x[region] == copy
        assert (x[region + 1:] == blank).all()
        assert y[region + 1:].tolist() == data
        assert (y[: region + 1] == IGNORE).all()


def test_compression_reconstructs_the_inputs() -> None:
    task = resolve_task("compression", None, SCALE)
    split = fresh(task)
    assert task.head == "autoencoder"
    np.testing.assert_array_equal(split.test_targets[:, :-1], split.test_inputs[:, :-1])
    assert (split.test_inputs[:, -1] == task.vocab_size - 1).all()
    assert (split.test_targets[:, -1] == IGNORE).all()


def test_memorization_uses_one_fixed_map_in_train_and_test() -> None:
    task = resolve_task("memorization", None, SCALE)
    split = fresh(task)
    kv = memorization_map(task, 0)
    for x, y in ((split.train_inputs, split.train_targets),
                 (split.test_inputs, split.test_targets)):
        assert (x[:, 1::2] == task.vocab_size - 1).all()
        np.testing.assert_array_equal(y[:, 1::2], kv[x[:, 0::2]])
        assert (y[:, 0::2] == IGNORE).all()
    seen_keys = set(split.train_inputs[:, 0::2].ravel().tolist())
    assert seen_keys == set(range(len(kv))), "every key is shown in training"

"""MAD-style synthetic tasks (Poli et al. 2024), generated in code, deterministic for a seed.

Every task yields ``inputs`` and ``targets``, int64 arrays of shape (N, seq_len). ``targets[t]``
is what the model must output after reading ``inputs[: t + 1]``, and ``IGNORE`` (-100) wherever
nothing is asked; scoring is accuracy at the answer positions of held-out examples. The held-out
set is disjoint from the training set (no test input sequence occurs in training).

Token layout per task (V = vocab_size):
- in-context recall: key/value pairs ``k v k v ...``; keys ``[0, K)``, values ``[K, 2K)``, K = V//2;
  each sequence has its own key->value map; every value of a key seen before is an answer (MAD's
  multi-query baseline); the last pair always repeats an earlier key.
- noisy recall: the same with ``noise_vocab_size`` extra noise tokens (the last ones of the
  vocabulary); a pair slot is a noise pair with probability ``frac_noise``.
- fuzzy recall: keys and values are motifs of 1..``motif_size`` tokens (held-out keys are
  ``motif_size`` long, as in MAD); sequences are left-padded with the pad token V-1; the answers
  are the value tokens of repeated keys, and the sequence ends with a repeat of a probe key.
- selective copying: ``n_copy`` data tokens scattered among blanks (V-2), then the copy token
  (V-1), then ``n_copy`` blanks at which the data tokens are asked for, in order.
- compression: ``seq_len - 1`` random tokens and the compression token (V-1); the model must
  reconstruct every token from its state at the last position (an auto-encoder head, as MAD's
  ``autoencoder`` backbone: the encoding is the last position's hidden state).
- memorization: ``key insert key insert ...`` with one fixed key->value map for the whole task
  (from ``data_seed``); the answer at each insert token (V-1) is the value of the key before it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

import numpy as np

from star.proxy.config import MAD_TASKS, TaskParams

IGNORE = -100
Head = Literal["lm", "autoencoder"]


class TaskConfigError(ValueError):
    """A task setting that cannot produce a well-defined task (names the task and field)."""


@dataclass(frozen=True)
class TaskDef:
    """One fully resolved task: every size fixed."""

    name: str
    vocab_size: int
    seq_len: int
    n_train: int
    n_test: int
    noise_vocab_size: int = 0
    frac_noise: float = 0.0
    motif_size: int = 1
    n_copy: int = 0
    head: Head = "lm"

    @property
    def chance(self) -> float:
        """Accuracy of guessing uniformly among the tokens an answer can be."""
        if self.name in ("selective_copying",):
            return 1.0 / (self.vocab_size - 2)
        if self.name == "compression":
            return 1.0 / (self.vocab_size - 1 - self.noise_vocab_size)
        if self.name == "memorization":
            return 1.0 / ((self.vocab_size - 1) // 2)
        if self.name == "fuzzy_recall":
            return 1.0 / ((self.vocab_size - 1) // 2)
        return 1.0 / ((self.vocab_size - self.noise_vocab_size) // 2)


# MAD baselines (FACTS.md; athms/mad-lab configs/tasks/*.yml): 1,280 test examples each.
DEFAULTS: dict[str, TaskDef] = {
    "in_context_recall": TaskDef("in_context_recall", 16, 128, 12_800, 1_280),
    "fuzzy_recall": TaskDef("fuzzy_recall", 16, 128, 12_800, 1_280, motif_size=3),
    "noisy_recall": TaskDef(
        "noisy_recall", 32, 128, 12_800, 1_280, noise_vocab_size=16, frac_noise=0.2
    ),
    "selective_copying": TaskDef("selective_copying", 16, 256, 12_800, 1_280, n_copy=16),
    "compression": TaskDef("compression", 16, 32, 12_800, 1_280, head="autoencoder"),
    "memorization": TaskDef("memorization", 256, 32, 256, 1_280),
}
MIN_SEQ = {
    "in_context_recall": 16,
    "fuzzy_recall": 32,
    "noisy_recall": 16,
    "selective_copying": 16,
    "compression": 8,
    "memorization": 8,
}
MIN_TRAIN, MIN_TEST = 256, 64


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def resolve_task(name: str, params: TaskParams | None = None, scale: float = 1.0) -> TaskDef:
    """The task ``name`` at ``scale`` with explicit ``params`` overrides, checked."""
    if name not in DEFAULTS:
        raise TaskConfigError(f"tasks: unknown task {name!r} (known: {', '.join(MAD_TASKS)})")
    d = DEFAULTS[name]
    p = params or TaskParams()
    root = math.sqrt(scale)
    seq = p.seq_len if p.seq_len is not None else max(MIN_SEQ[name], _even(d.seq_len * root))
    n_copy = (
        p.n_copy if p.n_copy is not None else (max(2, round(d.n_copy * root)) if d.n_copy else 0)
    )
    if p.seq_len is None and name == "selective_copying":
        seq = max(seq, 4 * n_copy)
    task = replace(
        d,
        vocab_size=p.vocab_size if p.vocab_size is not None else d.vocab_size,
        seq_len=seq,
        n_train=p.n_train
        if p.n_train is not None
        else max(min(d.n_train, MIN_TRAIN), round(d.n_train * scale)),
        n_test=p.n_test
        if p.n_test is not None
        else max(min(d.n_test, MIN_TEST), round(d.n_test * scale)),
        noise_vocab_size=(
            p.noise_vocab_size if p.noise_vocab_size is not None else d.noise_vocab_size
        ),
        frac_noise=p.frac_noise if p.frac_noise is not None else d.frac_noise,
        motif_size=p.motif_size if p.motif_size is not None else d.motif_size,
        n_copy=n_copy,
    )
    _check(task)
    return task


def _check(t: TaskDef) -> None:
    def bad(field: str, why: str) -> TaskConfigError:
        return TaskConfigError(f"task_params.{t.name}.{field}: {why}")

    if t.frac_noise > 0 and t.noise_vocab_size == 0:
        raise bad("noise_vocab_size", "must be > 0 when frac_noise > 0")
    if t.name in ("in_context_recall", "noisy_recall", "memorization") and t.seq_len % 2:
        raise bad("seq_len", f"{t.seq_len} must be even (key/value pairs)")
    if t.name in ("in_context_recall", "noisy_recall"):
        if (t.vocab_size - t.noise_vocab_size) // 2 < 2:
            raise bad("vocab_size", "needs at least 2 keys and 2 values besides noise tokens")
        if t.seq_len < 6:
            raise bad("seq_len", "needs at least 3 key/value pairs")
    if t.name == "fuzzy_recall":
        if (t.vocab_size - 1) // 2 < t.motif_size:
            raise bad("vocab_size", f"{t.vocab_size} leaves fewer keys than motif_size")
        if t.seq_len < 6 * t.motif_size + 1:
            raise bad("seq_len", f"{t.seq_len} < 6 * motif_size + 1")
    if t.name == "selective_copying":
        if t.vocab_size < 4:
            raise bad("vocab_size", "needs data tokens besides blank and copy")
        if t.seq_len <= 2 * t.n_copy + 1:
            raise bad("seq_len", f"{t.seq_len} must exceed 2 * n_copy + 1 = {2 * t.n_copy + 1}")
    if t.name == "compression" and t.vocab_size - 1 - t.noise_vocab_size < 2:
        raise bad("vocab_size", "needs at least 2 data tokens")
    if t.name == "memorization" and (t.vocab_size - 1) // 2 < 2:
        raise bad("vocab_size", "needs at least 2 keys")


# ---- generators: (rng, task, n, test) -> (inputs, targets), each (n, seq_len) int64 ----------


def _recall(rng: np.random.Generator, t: TaskDef, n: int, test: bool) -> tuple[np.ndarray, ...]:
    k = (t.vocab_size - t.noise_vocab_size) // 2
    pairs = t.seq_len // 2
    rows = np.arange(n)[:, None]
    table = rng.integers(k, 2 * k, (n, k))  # per-sequence key -> value map
    keys = rng.integers(0, k, (n, pairs))
    noise = (
        (rng.random((n, pairs)) < t.frac_noise)
        if t.frac_noise > 0
        else np.zeros((n, pairs), dtype=bool)
    )
    noise[:, 0] = noise[:, -1] = False
    # the last pair repeats a key drawn from the earlier non-noise pairs: >= 1 answer each
    score = np.where(noise[:, :-1], -1.0, rng.random((n, pairs - 1)))
    keys[:, -1] = keys[np.arange(n), score.argmax(axis=1)]
    values = table[rows, keys]
    present = (keys[..., None] == np.arange(k)) & ~noise[..., None]  # (n, pairs, k)
    before = np.cumsum(present, axis=1) - present
    repeat = (np.take_along_axis(before, keys[..., None], axis=2)[..., 0] > 0) & ~noise
    inputs = np.empty((n, 2 * pairs), dtype=np.int64)
    inputs[:, 0::2], inputs[:, 1::2] = keys, values
    if noise.any():
        lo = t.vocab_size - t.noise_vocab_size
        inputs[:, 0::2][noise] = rng.integers(lo, t.vocab_size, int(noise.sum()))
        inputs[:, 1::2][noise] = rng.integers(lo, t.vocab_size, int(noise.sum()))
    targets = np.full_like(inputs, IGNORE)
    targets[:, 0::2] = np.where(repeat, values, IGNORE)  # asked at the key, answered next
    return inputs, targets


def _fuzzy(rng: np.random.Generator, t: TaskDef, n: int, test: bool) -> tuple[np.ndarray, ...]:
    k, m, pad = (t.vocab_size - 1) // 2, t.motif_size, t.vocab_size - 1
    max_pairs = t.seq_len // 2 + 1
    inputs = np.full((n, t.seq_len), pad, dtype=np.int64)
    targets = np.full((n, t.seq_len), IGNORE, dtype=np.int64)
    for row in range(n):
        # motifs without repeated tokens (as MAD's permutations): first columns of a shuffle
        key_perm = np.argsort(rng.random((max_pairs + 1, k)), axis=1)
        val_perm = np.argsort(rng.random((max_pairs + 1, k)), axis=1) + k
        ksizes = np.full(max_pairs + 1, m) if test else rng.integers(1, m + 1, max_pairs + 1)
        vsizes = rng.integers(1, m + 1, max_pairs + 1)
        probe_k = tuple(key_perm[-1, : ksizes[-1]].tolist())
        probe_v = tuple(val_perm[-1, : vsizes[-1]].tolist())
        probe_len = len(probe_k) + len(probe_v)
        body_len = t.seq_len + 1 - probe_len  # one extra token: the last input is not asked
        kv = {probe_k: probe_v}
        pairs: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        used = 0
        for i in range(max_pairs):
            key = tuple(key_perm[i, : ksizes[i]].tolist())
            value = kv.setdefault(key, tuple(val_perm[i, : vsizes[i]].tolist()))
            if used + len(key) + len(value) > body_len - probe_len:
                break
            pairs.append((key, value))
            used += len(key) + len(value)
        pairs.insert(int(rng.integers(0, len(pairs) + 1)), (probe_k, probe_v))
        pairs.append((probe_k, probe_v))
        tokens: list[int] = []
        answer: list[bool] = []
        seen: set[tuple[int, ...]] = set()
        for key, value in pairs:
            tokens += key + value
            answer += [False] * len(key) + [key in seen] * len(value)
            seen.add(key)
        seq = np.asarray(tokens, dtype=np.int64)
        ans = np.asarray(answer, dtype=bool)
        lab = np.where(ans[1:], seq[1:], IGNORE)  # asked one position before each answer
        start = t.seq_len - (len(seq) - 1)
        inputs[row, start:] = seq[:-1]
        targets[row, start:] = lab
    return inputs, targets


def _selective_copying(
    rng: np.random.Generator, t: TaskDef, n: int, test: bool
) -> tuple[np.ndarray, ...]:
    blank, copy = t.vocab_size - 2, t.vocab_size - 1
    region = t.seq_len - t.n_copy - 1  # data tokens scattered among blanks
    data = rng.integers(0, t.vocab_size - 2, (n, t.n_copy))
    where = np.sort(np.argsort(rng.random((n, region)), axis=1)[:, : t.n_copy], axis=1)
    inputs = np.full((n, t.seq_len), blank, dtype=np.int64)
    inputs[np.arange(n)[:, None], where] = data
    inputs[:, region] = copy
    targets = np.full_like(inputs, IGNORE)
    targets[:, region + 1 :] = data
    return inputs, targets


def _compression(
    rng: np.random.Generator, t: TaskDef, n: int, test: bool
) -> tuple[np.ndarray, ...]:
    data_vocab = t.vocab_size - 1 - t.noise_vocab_size
    inputs = rng.integers(0, data_vocab, (n, t.seq_len))
    inputs[:, -1] = t.vocab_size - 1  # the compression token
    targets = inputs.copy()
    targets[:, -1] = IGNORE
    if t.frac_noise > 0:
        noise = rng.random((n, t.seq_len)) < t.frac_noise
        noise[:, -1] = False
        inputs[noise] = rng.integers(data_vocab, data_vocab + t.noise_vocab_size, int(noise.sum()))
        targets[noise] = IGNORE
    return inputs, targets


def memorization_map(t: TaskDef, data_seed: int) -> np.ndarray:
    """The task-wide key -> value map of memorization (index = key)."""
    k = (t.vocab_size - 1) // 2
    return np.random.default_rng(_seed_seq(t.name, data_seed, 2)).permutation(k) + k


def _memorization(
    rng: np.random.Generator, t: TaskDef, n: int, test: bool, kv: np.ndarray
) -> tuple[np.ndarray, ...]:
    keys = rng.integers(0, len(kv), (n, t.seq_len // 2))
    inputs = np.full((n, t.seq_len), t.vocab_size - 1, dtype=np.int64)
    inputs[:, 0::2] = keys
    targets = np.full_like(inputs, IGNORE)
    targets[:, 1::2] = kv[keys]  # asked at the insert token after each key
    return inputs, targets


@dataclass(frozen=True)
class TaskSplit:
    """Train and held-out examples of one task (arrays are read-only)."""

    task: TaskDef
    train_inputs: np.ndarray
    train_targets: np.ndarray
    test_inputs: np.ndarray
    test_targets: np.ndarray


def _seed_seq(name: str, data_seed: int, stream: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([data_seed, zlib.crc32(name.encode()), stream])


def _generate(
    t: TaskDef, rng: np.random.Generator, n: int, test: bool, data_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    if t.name in ("in_context_recall", "noisy_recall"):
        x, y = _recall(rng, t, n, test)
    elif t.name == "fuzzy_recall":
        x, y = _fuzzy(rng, t, n, test)
    elif t.name == "selective_copying":
        x, y = _selective_copying(rng, t, n, test)
    elif t.name == "compression":
        x, y = _compression(rng, t, n, test)
    else:
        x, y = _memorization(rng, t, n, test, memorization_map(t, data_seed))
    return x.astype(np.int64, copy=False), y.astype(np.int64, copy=False)


@lru_cache(maxsize=16)
def build_task(t: TaskDef, data_seed: int = 0) -> TaskSplit:
    """Generate ``t`` for ``data_seed``; cached per process (the same for every candidate)."""
    train_x, train_y = _generate(
        t, np.random.default_rng(_seed_seq(t.name, data_seed, 0)), t.n_train, False, data_seed
    )
    rng = np.random.default_rng(_seed_seq(t.name, data_seed, 1))
    test_x, test_y = _generate(t, rng, t.n_test, True, data_seed)
    seen = {row.tobytes() for row in train_x}
    for _ in range(100):  # redraw held-out examples that occur in training
        clash = np.array([row.tobytes() in seen for row in test_x], dtype=bool)
        if not clash.any():
            break
        test_x[clash], test_y[clash] = _generate(t, rng, int(clash.sum()), True, data_seed)
    else:
        raise TaskConfigError(
            f"task_params.{t.name}: cannot draw {t.n_test} held-out examples "
            "disjoint from training (task too small: raise seq_len or vocab)"
        )
    for a in (train_x, train_y, test_x, test_y):
        a.flags.writeable = False
    return TaskSplit(t, train_x, train_y, test_x, test_y)

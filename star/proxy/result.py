"""Frozen results of a proxy training: per-task metrics, text metrics, the aggregate objective.

Aggregate (documented here because the search minimises it):
- ``mad_accuracy``: mean held-out accuracy over the enabled MAD tasks *except memorization*
  (MAD's scores correlate with compute-optimal perplexity across architectures, memorization
  trends the other way: FACTS.md), so it is reported on its own as ``memorization_accuracy``.
- ``text_loss``: validation cross-entropy (nats/token) of the text component; ``perplexity`` =
  exp(text_loss); ``bits_per_byte`` is comparable across tokenizers.
- ``quality_loss`` (minimise, 0 = perfect, ~1 = chance): the mean of the available terms
  ``1 - mad_accuracy`` and ``text_loss / ln(vocab)`` (a uniform guess scores 1).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict


class TaskMetrics(BaseModel):
    """One MAD task: held-out accuracy at answer positions, and how training went."""

    model_config = ConfigDict(frozen=True)

    task: str
    accuracy: float
    chance: float  # uniform guess among the tokens an answer can be
    test_loss: float
    train_loss_first: float  # mean over the first steps (up to 10)
    train_loss_last: float  # mean over the last steps (up to 10)
    steps: int
    tokens: int
    wall_time_s: float
    vocab_size: int
    seq_len: int
    n_train: int
    n_test: int


class TextMetrics(BaseModel):
    """The real-text component: validation loss on held-out documents."""

    model_config = ConfigDict(frozen=True)

    val_loss: float
    perplexity: float
    bits_per_byte: float
    train_loss_first: float
    train_loss_last: float
    steps: int
    tokens: int
    wall_time_s: float
    vocab_size: int
    seq_len: int
    source: str
    train_bytes: int
    val_tokens: int
    tokenizer_path: str


class ProxyResult(BaseModel):
    """Everything a proxy training returns; ``error`` set means the candidate failed."""

    model_config = ConfigDict(frozen=True)

    name: str
    seed: int
    device: str = ""
    error: str | None = None
    tasks: dict[str, TaskMetrics] = {}
    text: TextMetrics | None = None
    mad_accuracy: float | None = None
    memorization_accuracy: float | None = None
    text_loss: float | None = None
    quality_loss: float | None = None
    steps: int = 0  # optimizer steps over all components
    wall_time_s: float = 0.0
    tokens_per_s: float = 0.0  # training tokens per second of training time
    stopped_early: bool = False  # the wall-time budget cut a component short
    n_params: int = 0
    weights_path: str | None = None
    weights_task: str | None = None  # the component whose trained weights were saved

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, name: str, seed: int, error: str, **partial: object) -> ProxyResult:
        return cls.model_validate({"name": name, "seed": seed, "error": error, **partial})


class Aggregate(NamedTuple):
    mad_accuracy: float | None
    memorization_accuracy: float | None
    text_loss: float | None
    quality_loss: float | None


def aggregate(tasks: dict[str, TaskMetrics], text: TextMetrics | None) -> Aggregate:
    """The aggregate fields of ``ProxyResult`` (see the module docstring)."""
    recall_like = [m.accuracy for name, m in tasks.items() if name != "memorization"]
    mad = sum(recall_like) / len(recall_like) if recall_like else None
    memo = tasks["memorization"].accuracy if "memorization" in tasks else None
    terms: list[float] = []
    if mad is not None:
        terms.append(1.0 - mad)
    if text is not None:
        terms.append(text.val_loss / math.log(text.vocab_size))
    return Aggregate(
        mad_accuracy=mad,
        memorization_accuracy=memo,
        text_loss=text.val_loss if text is not None else None,
        quality_loss=sum(terms) / len(terms) if terms else None,
    )

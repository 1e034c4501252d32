"""Frozen results of a proxy training: per-task metrics, text metrics, the aggregate objective.

The objective (what the search minimises as ``quality``) is ``proxy_loss`` = ``quality_loss``,
lower is better, 0 = perfect, about 1 = chance: the weighted mean of one term per component,

- a MAD task: ``1 - accuracy`` (held-out accuracy at answer positions; ``score: loss`` uses the
  held-out answer cross-entropy / ln(answer alphabet) instead, smoother at tiny budgets);
- text: ``val_loss / ln(vocab)`` (a uniform guess scores 1); reported as perplexity and bits/byte.

Weights come from ``ProxyConfig.weights`` (see config.py); memorization defaults to 0 because MAD
found it trending against compute-optimal perplexity (FACTS.md), so it is reported beside the
objective, not in it. ``ProxyResult.components`` lists each term with its weight and the metric it
came from, so a display can show what the number means (``describe_quality``).

Kept for readers of stored results: ``mad_accuracy`` (mean accuracy of the trained MAD tasks
except memorization), ``memorization_accuracy`` and ``text_loss``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

OBJECTIVE = "proxy_loss"
MEMORIZATION_DEFAULT_WEIGHT = 0.0


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
    cpu_time_s: float = 0.0  # CPU seconds of this component (training and evaluation)
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
    cpu_time_s: float = 0.0


class QualityComponent(BaseModel):
    """One term of the objective: ``term`` (0 good .. ~1 chance) enters with ``weight``."""

    model_config = ConfigDict(frozen=True)

    name: str  # a task name or "text"
    term: float
    weight: float  # normalised: the weights of a result sum to 1 (0 = reported, not counted)
    metric: str  # what was measured: "accuracy" | "answer_loss" | "perplexity"
    value: float  # the metric's value (accuracy, or perplexity for text)
    higher_is_better: bool
    formula: str  # how the term follows from the metric, e.g. "1 - accuracy"


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
    # What quality_loss is: its name, direction and terms (see the module docstring).
    objective: str = OBJECTIVE
    direction: Literal["minimize"] = "minimize"
    components: tuple[QualityComponent, ...] = ()
    steps: int = 0  # optimizer steps over all components
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0  # CPU seconds of the training process (all its threads)
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
    components: tuple[QualityComponent, ...]


def default_weights(names: list[str]) -> dict[str, float]:
    """The weights when none are configured: text 1, the other MAD tasks share 1, memorization 0
    (so MAD and text count equally, as ``(1 - mad_accuracy + text_loss / ln V) / 2``)."""
    mad = [n for n in names if n not in ("text", "memorization")]
    out = {n: 1.0 / len(mad) for n in mad}
    if "memorization" in names:
        out["memorization"] = MEMORIZATION_DEFAULT_WEIGHT
    if "text" in names:
        out["text"] = 1.0
    return out


def task_term(m: TaskMetrics, score: str) -> tuple[float, str, float, bool, str]:
    """(term, metric, value, higher_is_better, formula) of a MAD task."""
    if score == "loss":
        alphabet = max(2.0, 1.0 / m.chance)
        return (m.test_loss / math.log(alphabet), "answer_loss", m.test_loss, False,
                f"answer_loss / ln({alphabet:.0f})")
    return 1.0 - m.accuracy, "accuracy", m.accuracy, True, "1 - accuracy"


def aggregate(
    tasks: dict[str, TaskMetrics],
    text: TextMetrics | None,
    weights: dict[str, float] | None = None,
    score: str = "accuracy",
) -> Aggregate:
    """The aggregate fields of ``ProxyResult`` (see the module docstring).

    ``weights`` by component name; a trained component missing from it gets its default weight.
    """
    names = [*tasks, *(["text"] if text is not None else [])]
    w = default_weights(names)
    w.update({k: v for k, v in (weights or {}).items() if k in w})
    total = sum(w.values())
    parts: list[QualityComponent] = []
    for name, m in tasks.items():
        term, metric, value, up, formula = task_term(m, score)
        parts.append(QualityComponent(name=name, term=term, weight=w[name] / total if total
                                      else 0.0, metric=metric, value=value,
                                      higher_is_better=up, formula=formula))
    if text is not None:
        parts.append(QualityComponent(
            name="text", term=text.val_loss / math.log(text.vocab_size),
            weight=w["text"] / total if total else 0.0, metric="perplexity",
            value=text.perplexity, higher_is_better=False,
            formula=f"ln(perplexity) / ln({text.vocab_size})"))
    recall_like = [m.accuracy for name, m in tasks.items() if name != "memorization"]
    quality = sum(p.weight * p.term for p in parts) if total > 0 else None
    return Aggregate(
        mad_accuracy=sum(recall_like) / len(recall_like) if recall_like else None,
        memorization_accuracy=tasks["memorization"].accuracy if "memorization" in tasks else None,
        text_loss=text.val_loss if text is not None else None,
        quality_loss=quality,
        components=tuple(parts),
    )


def describe_quality(result: ProxyResult | Mapping[str, Any]) -> list[str]:
    """Human-readable lines saying what a result's quality number is made of.

    Takes a ``ProxyResult`` or its stored JSON (``result.model_dump(mode="json")``, as the search
    keeps it). First line: ``proxy_loss ↓ 0.412``; then one line per component, e.g.
    ``  0.50 x text: perplexity 7.91 (↓) -> term 0.373 = ln(perplexity) / ln(256)``.
    """
    doc = result.model_dump(mode="json") if isinstance(result, ProxyResult) else dict(result)
    arrow = "↓" if doc.get("direction", "minimize") == "minimize" else "↑"
    value = doc.get("quality_loss")
    head = f"{doc.get('objective', OBJECTIVE)} {arrow} " + (
        f"{value:.4g}" if isinstance(value, int | float) else "n/a")
    if doc.get("error"):
        head += f" (failed: {doc['error']})"
    lines = [head]
    for c in doc.get("components") or ():
        up = "↑" if c["higher_is_better"] else "↓"
        lines.append(f"  {c['weight']:.2f} x {c['name']}: {c['metric']} {c['value']:.4g} ({up})"
                     f" -> term {c['term']:.3f} = {c['formula']}")
    return lines

"""Validation: every problem of a genome vector, each with its field path.

Validation answers "can this be built as a model?". Whether a given runtime (llama.cpp
architecture) can run it is a separate question answered by ``star.export``.
"""

from __future__ import annotations

from dataclasses import dataclass

from star.genome.encoding import (
    LAYOUT,
    MAX_LAYERS,
    VECTOR_LENGTH,
    GenomeData,
)
from star.genome.spec import ChannelMixer, Routing, TokenMixer


@dataclass(frozen=True)
class Problem:
    """One reason a genome is invalid: a dotted field path and a human-readable reason."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidGenome(ValueError):
    """Raised when a genome with problems is used; carries every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def check_bounds(vector: list[int] | tuple[int, ...]) -> list[Problem]:
    if len(vector) != VECTOR_LENGTH:
        return [Problem("genome", f"vector has {len(vector)} genes, expected {VECTOR_LENGTH}")]
    problems: list[Problem] = []
    for slot, value in zip(LAYOUT, vector, strict=True):
        g = slot.gene
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(Problem(slot.path, f"must be an integer, got {value!r}"))
        elif not g.low <= value <= g.high:
            lo, hi = g.low * g.unit, g.high * g.unit
            shown = value * g.unit
            problems.append(Problem(slot.path, f"{shown} is outside [{lo}, {hi}]"))
    return problems


def _divides(a: int, b: int) -> bool:
    return a > 0 and b % a == 0


def check_structure(data: GenomeData, names: list[str] | None = None) -> list[Problem]:
    """Cross-gene rules on an in-bounds genome. ``names`` label operators in paths."""
    problems: list[Problem] = []

    def op_path(k: int) -> str:
        return f"operators.{names[k]}" if names and k < len(names) else f"operators[{k}]"

    if not data.layers:
        problems.append(Problem("backbone.layers", "at least one layer is required"))
    if len(data.layers) > MAX_LAYERS:
        problems.append(Problem("backbone.layers", f"at most {MAX_LAYERS} layers"))
    used: set[int] = set()
    for i, op in enumerate(data.layers):
        if op < 0:
            problems.append(
                Problem(f"backbone.layers[{i}]", "empty slot before a used slot (layers must be "
                        "contiguous)")
            )
        else:
            used.add(op)
    for k in sorted(used):
        genes = data.operators[k]
        f = genes.featurizer
        path = op_path(k)
        mixer, channel = genes.mixer, genes.channel
        if mixer in (TokenMixer.ATTENTION, TokenMixer.SWA) and not _divides(
            f["kv_heads"], f["heads"]
        ):
            problems.append(
                Problem(f"{path}.featurizer.kv_heads",
                        f"{f['kv_heads']} KV heads must divide {f['heads']} heads")
            )
        if mixer == TokenMixer.SSM and not _divides(f["ssm_groups"], f["heads"]):
            problems.append(
                Problem(f"{path}.featurizer.ssm_groups",
                        f"{f['ssm_groups']} groups must divide {f['heads']} SSM heads")
            )
        if channel == ChannelMixer.MOE:
            if f["top_k"] > f["experts"]:
                problems.append(
                    Problem(f"{path}.featurizer.top_k",
                            f"top_k {f['top_k']} exceeds {f['experts']} experts")
                )
            if f["expert_bias"] and f["routing"] != 1:
                problems.append(
                    Problem(f"{path}.featurizer.expert_bias",
                            f"expert bias needs {Routing.SIGMOID.value} routing")
                )
    # sharing groups: one operator per group
    first_op: dict[int, tuple[int, int]] = {}
    for i, (op, group) in enumerate(zip(data.layers, data.share, strict=False)):
        if group == 0 or op < 0:
            continue
        if group in first_op and first_op[group][1] != op:
            j = first_op[group][0]
            problems.append(
                Problem(f"backbone.share[{i}]",
                        f"group {group} mixes operators (layer {j} and layer {i} differ)")
            )
        first_op.setdefault(group, (i, op))
    return problems


def validate_vector(vector: list[int] | tuple[int, ...],
                    names: list[str] | None = None) -> list[Problem]:
    """All problems of a raw vector; empty when it can be built."""
    problems = check_bounds(vector)
    if problems:
        return problems
    return check_structure(GenomeData.decode(vector), names)

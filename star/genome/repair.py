"""Repair and canonical form.

``repair`` maps ANY integer vector of the right length to the nearest valid genome, changing as
few genes as it can and each by as little as it can (clamp to bounds, the nearest divisor for head
groups, ...). ``canonicalize`` picks one representative per phenotype, so that equal architectures
have equal vectors and therefore equal genome ids:

- layers are contiguous from slot 0 (empty slots dropped);
- operator genomes are numbered by first use; unused operator slots hold defaults;
- inactive featurizer genes (e.g. a conv kernel on an attention operator) hold defaults;
- sharing groups are numbered by first use; a group of one layer is no group.
"""

from __future__ import annotations

from collections.abc import Sequence

from star.genome.encoding import (
    FEATURIZER_GENES,
    LOWER,
    MAX_LAYERS,
    MAX_OPERATORS,
    UPPER,
    VECTOR_LENGTH,
    GenomeData,
    OperatorGenes,
)
from star.genome.spec import ChannelMixer, TokenMixer

_FEATURE_DEFAULTS = {g.name: g.default for g in FEATURIZER_GENES}
_HIGH = {g.name: g.high for g in FEATURIZER_GENES}


def nearest_divisor(n: int, target: int, high: int | None = None) -> int:
    """The divisor of ``n`` closest to ``target`` (ties go to the smaller one), at most ``high``."""
    divisors = [d for d in range(1, n + 1) if n % d == 0 and (high is None or d <= high)]
    return min(divisors, key=lambda d: (abs(d - target), d))


def clamp(vector: Sequence[int]) -> list[int]:
    out = list(vector)[:VECTOR_LENGTH] + [0] * max(0, VECTOR_LENGTH - len(vector))
    return [min(max(int(x), lo), hi) for x, lo, hi in zip(out, LOWER, UPPER, strict=True)]


def _repair_operator(op: OperatorGenes) -> None:
    f = op.featurizer
    if op.mixer in (TokenMixer.ATTENTION, TokenMixer.SWA):
        f["kv_heads"] = nearest_divisor(f["heads"], f["kv_heads"], _HIGH["kv_heads"])
    if op.mixer == TokenMixer.SSM:
        f["ssm_groups"] = nearest_divisor(f["heads"], f["ssm_groups"], _HIGH["ssm_groups"])
    if op.channel == ChannelMixer.MOE:
        f["top_k"] = min(f["top_k"], f["experts"])
        if f["routing"] != 1:
            f["expert_bias"] = 0


def canonicalize(data: GenomeData) -> GenomeData:
    """The canonical representative of ``data`` (assumed in bounds; see module doc)."""
    pairs = [(op, s) for op, s in zip(data.layers, data.share, strict=False) if op >= 0]
    pairs = pairs[:MAX_LAYERS]
    renumber: dict[int, int] = {}
    operators: list[OperatorGenes] = []
    layers: list[int] = []
    for op, _ in pairs:
        if op not in renumber:
            src = data.operators[op]
            active = set(src.active_features())
            featurizer = {
                name: (value if name in active else _FEATURE_DEFAULTS[name])
                for name, value in src.featurizer.items()
            }
            renumber[op] = len(operators)
            operators.append(
                OperatorGenes(src.token_mixer, src.channel_mixer, src.norm, featurizer)
            )
        layers.append(renumber[op])
    # identical operator genomes are one operator
    seen: dict[tuple[int, ...], int] = {}
    merge: dict[int, int] = {}
    unique: list[OperatorGenes] = []
    for k, genes in enumerate(operators):
        if genes.key() in seen:
            merge[k] = seen[genes.key()]
        else:
            seen[genes.key()] = len(unique)
            merge[k] = len(unique)
            unique.append(genes)
    layers = [merge[k] for k in layers]
    # sharing groups: by first use; singletons and mixed-operator members dropped
    share_raw = [s for _, s in pairs]
    counts: dict[tuple[int, int], int] = {}
    group_op: dict[int, int] = {}
    for op, s in zip(layers, share_raw, strict=True):
        if s:
            group_op.setdefault(s, op)
            if group_op[s] == op:
                counts[(s, op)] = counts.get((s, op), 0) + 1
    share: list[int] = []
    group_ids: dict[int, int] = {}
    for op, s in zip(layers, share_raw, strict=True):
        if s and group_op[s] == op and counts[(s, op)] > 1:
            if s not in group_ids:
                group_ids[s] = len(group_ids) + 1
            share.append(group_ids[s])
        else:
            share.append(0)
    return GenomeData(model=dict(data.model), operators=unique, layers=layers, share=share)


def repair(vector: Sequence[int]) -> tuple[int, ...]:
    """Nearest valid canonical genome vector for any integer vector."""
    data = GenomeData.decode(clamp(vector))
    # keep the used slots in order; empty slots in the middle are simply dropped
    pairs = [(op, s) for op, s in zip(data.layers, data.share, strict=False) if op >= 0]
    if not pairs:
        pairs = [(0, 0)]
    data.layers = [op for op, _ in pairs]
    data.share = [s for _, s in pairs]
    for k in set(data.layers):
        _repair_operator(data.operators[k])
    canon = canonicalize(data)
    assert len(canon.operators) <= MAX_OPERATORS
    return canon.encode()

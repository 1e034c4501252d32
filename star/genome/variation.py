"""Variation operators on genome vectors: mutation at three resolutions and layer-wise crossover.

Each operator takes an explicit ``numpy.random.Generator`` (same seed -> same offspring) and
returns a *repaired, canonical* vector, so the search never holds an invalid genome. Frozen model
genes (vocabulary, numerics, context) are never mutated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

import numpy as np

from star.genome.encoding import (
    CHANNEL_FEATURES,
    CHANNEL_MIXERS,
    FEATURIZER_GENES,
    MAX_LAYERS,
    MAX_OPERATORS,
    MIXER_FEATURES,
    MODEL_GENES,
    NORMS,
    TOKEN_MIXERS,
    GenomeData,
    OperatorGenes,
)
from star.genome.repair import repair

_FEATURE = {g.name: g for g in FEATURIZER_GENES}


class Resolution(str, Enum):
    BACKBONE = "backbone"
    OPERATOR = "operator"
    FEATURIZER = "featurizer"


def _step(rng: np.random.Generator, value: int, low: int, high: int) -> int:
    """A small signed step (mostly +-1, sometimes larger), never a no-op when range allows."""
    if low == high:
        return low
    for _ in range(8):
        size = 1 if rng.random() < 0.7 else int(rng.integers(2, 5))
        new = min(max(value + size * (1 if rng.random() < 0.5 else -1), low), high)
        if new != value:
            return new
    return low if value != low else high


def mutate_backbone(data: GenomeData, rng: np.random.Generator,
                    allowed_ops: Sequence[int] | None = None) -> None:
    """Change the layer sequence: swap an operator, insert, delete, move, or change sharing."""
    n = len(data.layers)
    used = sorted(set(data.layers))
    choices = ["replace", "insert", "delete", "swap", "share"]
    kind = choices[int(rng.integers(len(choices)))]
    i = int(rng.integers(n))
    if kind == "replace":
        pool = list(range(len(data.operators))) if allowed_ops is None else list(allowed_ops)
        pool = [k for k in pool if k < MAX_OPERATORS]
        if not pool:
            return
        # mostly reuse an operator already in the network, sometimes a latent one
        if rng.random() < 0.7 and len(used) > 1:
            data.layers[i] = int(rng.choice([k for k in used if k != data.layers[i]]))
        else:
            data.layers[i] = int(rng.choice(pool))
    elif kind == "insert" and n < MAX_LAYERS:
        data.layers.insert(i, data.layers[i])
        data.share.insert(i, 0)
    elif kind == "delete" and n > 1:
        del data.layers[i]
        del data.share[i]
    elif kind == "swap" and n > 1:
        j = int(rng.integers(n))
        data.layers[i], data.layers[j] = data.layers[j], data.layers[i]
        data.share[i], data.share[j] = data.share[j], data.share[i]
    else:
        # join the group of another layer with the same operator, or leave sharing
        mates = [j for j in range(n) if j != i and data.layers[j] == data.layers[i]]
        if data.share[i] or not mates:
            data.share[i] = 0
        else:
            j = int(rng.choice(mates))
            group = data.share[j] or (max(data.share, default=0) + 1)
            data.share[j] = data.share[i] = min(group, MAX_LAYERS // 2)


def mutate_operator(data: GenomeData, rng: np.random.Generator,
                    allowed_mixers: Sequence[int] | None = None,
                    allowed_channels: Sequence[int] | None = None) -> None:
    """Change the class of one operator in use (its token mixer, channel mixer or norm), or
    replace one token-mixer class by another in every operator that uses it.

    The class-wide swap is the family move: "every short conv becomes an SSM block" turns an
    LFM2 into a granitehybrid-shaped genome even when its convs are several operator genomes
    (the runtime fit then makes the new family's shapes consistent)."""
    used = sorted(set(data.layers))
    k = int(rng.choice(used))
    op = data.operators[k]
    what = int(rng.integers(4))
    if what in (0, 3):
        pool = allowed_mixers if allowed_mixers is not None else range(len(TOKEN_MIXERS))
        pool = [x for x in pool if x != op.token_mixer]
        if pool:
            new = int(rng.choice(pool))
            same = [data.operators[j] for j in used
                    if data.operators[j].token_mixer == op.token_mixer] if what == 3 else [op]
            donor = _donor(data, used, lambda o: o.token_mixer == new)
            for other in same:
                before = other.active_features()
                other.token_mixer = new
                _adopt(other, donor, MIXER_FEATURES[other.mixer], before,
                       data.model["d_model"])
    elif what == 1:
        pool = allowed_channels if allowed_channels is not None else range(len(CHANNEL_MIXERS))
        pool = [x for x in pool if x != op.channel_mixer]
        if pool:
            new = int(rng.choice(pool))
            donor = _donor(data, used, lambda o: o.channel_mixer == new)
            before = op.active_features()
            op.channel_mixer = new
            _adopt(op, donor, CHANNEL_FEATURES[op.channel], before, data.model["d_model"])
    else:
        op.norm = (op.norm + 1) % len(NORMS)


def _donor(data: GenomeData, used: Sequence[int],
           has: Callable[[OperatorGenes], bool]) -> OperatorGenes | None:
    """The first operator in use that already has the class a mutation introduces."""
    return next((data.operators[j] for j in used if has(data.operators[j])), None)


def _adopt(op: OperatorGenes, donor: OperatorGenes | None, names: Sequence[str],
           was_active: Sequence[str], d_model_units: int) -> None:
    """Give an operator that changed class the shape of its new class: the donor's genes (an
    operator of that class already in the genome), else, for genes the old class did not use,
    sizes in proportion to the model (64-wide heads; attention and linear attention q width =
    d_model, SSM d_inner = 2 * d_model as in Mamba-2; FFN width 8/3 * d_model)."""
    if donor is not None:
        for name in names:
            op.featurizer[name] = donor.featurizer[name]
        return
    f = op.featurizer
    expand = {"attention": 1, "swa": 1, "linear_attention": 1, "ssm": 2}.get(op.mixer.value)
    if expand is not None and "heads" in names and "heads" not in was_active:
        f["head_dim"] = 8  # 64
        f["heads"] = min(expand * d_model_units, _FEATURE["heads"].high)
        f["kv_heads"] = max(1, f["heads"] // 2)
    if "ffn_dim" in names and "ffn_dim" not in was_active:
        f["ffn_dim"] = min(-(-8 * d_model_units // 3), _FEATURE["ffn_dim"].high)


def mutate_featurizer(data: GenomeData, rng: np.random.Generator,
                      mutate_width: bool = True) -> None:
    """Step one active featurizer gene of one operator in use (or the model width)."""
    ops = sorted(set(data.layers))
    if mutate_width and rng.random() < 1.0 / (len(ops) + 4):
        g = MODEL_GENES[0]  # d_model: the only unfrozen model gene
        data.model[g.name] = _step(rng, data.model[g.name], g.low, g.high)
        return
    op = data.operators[int(rng.choice(ops))]
    active = op.active_features()
    if not active:
        return
    name = active[int(rng.integers(len(active)))]
    g = _FEATURE[name]
    op.featurizer[name] = _step(rng, op.featurizer[name], g.low, g.high)


def mutate(vector: Sequence[int], rng: np.random.Generator,
           resolution: Resolution | None = None, **kwargs: object) -> tuple[int, ...]:
    """One mutation at the given resolution (random when None); returns a repaired vector."""
    data = GenomeData.decode(repair(vector))
    if resolution is None:
        resolution = list(Resolution)[int(rng.choice(3, p=[0.3, 0.2, 0.5]))]
    if resolution == Resolution.BACKBONE:
        mutate_backbone(data, rng, kwargs.get("allowed_ops"))  # type: ignore[arg-type]
    elif resolution == Resolution.OPERATOR:
        mutate_operator(data, rng, kwargs.get("allowed_mixers"),  # type: ignore[arg-type]
                        kwargs.get("allowed_channels"))  # type: ignore[arg-type]
    else:
        mutate_featurizer(data, rng)
    return repair(data.encode())


def crossover(a: Sequence[int], b: Sequence[int], rng: np.random.Generator
              ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Layer-wise two-point crossover; each layer carries its whole operator genome along.

    Children take model genes from their first parent. Operators are re-interned per child; when a
    child would need more than MAX_OPERATORS distinct operators, the rarest ones are mapped onto
    the most similar kept operator (same token mixer class if possible).
    """
    pa, pb = GenomeData.decode(repair(a)), GenomeData.decode(repair(b))
    la = [(pa.operators[k], s, "a") for k, s in zip(pa.layers, pa.share, strict=True)]
    lb = [(pb.operators[k], s, "b") for k, s in zip(pb.layers, pb.share, strict=True)]
    n = max(len(la), len(lb))
    i, j = sorted(int(x) for x in rng.integers(0, n + 1, size=2))
    child1 = la[:i] + lb[i:j] + la[j:]
    child2 = lb[:i] + la[i:j] + lb[j:]
    return _assemble(pa, child1), _assemble(pb, child2)


def _assemble(base: GenomeData, layers: list[tuple[OperatorGenes, int, str]]
              ) -> tuple[int, ...]:
    layers = layers[:MAX_LAYERS] or [(base.operators[base.layers[0]], 0, "a")]
    keys: dict[tuple[int, ...], int] = {}
    ops: list[OperatorGenes] = []
    counts: list[int] = []
    idx: list[int] = []
    for op, _, _ in layers:
        key = op.key()
        if key not in keys:
            keys[key] = len(ops)
            ops.append(OperatorGenes(op.token_mixer, op.channel_mixer, op.norm,
                                     dict(op.featurizer)))
            counts.append(0)
        counts[keys[key]] += 1
        idx.append(keys[key])
    if len(ops) > MAX_OPERATORS:
        keep = sorted(range(len(ops)), key=lambda k: -counts[k])[:MAX_OPERATORS]
        remap = {k: n for n, k in enumerate(keep)}
        for k in range(len(ops)):
            if k not in remap:
                same = [m for m in keep if ops[m].token_mixer == ops[k].token_mixer]
                remap[k] = remap[same[0] if same else keep[0]]
        ops = [ops[k] for k in keep]
        idx = [remap[k] for k in idx]
    # groups from the two parents must not collide: offset parent b's group ids
    share = [s if src == "a" or s == 0 else s + MAX_LAYERS // 4 for _, s, src in layers]
    share = [min(s, MAX_LAYERS // 2) for s in share]
    data = GenomeData(model=dict(base.model), operators=ops, layers=idx, share=share)
    return repair(data.encode())


def random_genome(rng: np.random.Generator, *, n_layers: tuple[int, int] = (4, 24),
                  base: Sequence[int] | None = None) -> tuple[int, ...]:
    """A random valid genome: random operator genomes and layer sequence.

    ``base`` supplies the frozen model genes (vocabulary, numerics); otherwise defaults.
    """
    from star.genome.encoding import LOWER, UPPER, VECTOR_LENGTH

    vec = [int(rng.integers(lo, hi + 1)) for lo, hi in zip(LOWER, UPPER, strict=True)]
    data = GenomeData.decode(vec)
    for name in ("heads", "kv_heads"):
        for op in data.operators:
            op.featurizer[name] = int(rng.integers(1, 33))
    for op in data.operators:
        op.featurizer["experts"] = int(rng.integers(2, 33))
        op.featurizer["top_k"] = int(rng.integers(1, 5))
    n_ops = int(rng.integers(1, 4))
    depth = int(rng.integers(n_layers[0], n_layers[1] + 1))
    data.layers = [int(rng.integers(n_ops)) for _ in range(depth)]
    data.share = [0] * depth
    model_base = GenomeData.decode(tuple(base)).model if base is not None else None
    for g in MODEL_GENES:
        if g.frozen:
            data.model[g.name] = model_base[g.name] if model_base else g.default
    data.model["d_model"] = int(rng.integers(4, 33))
    assert VECTOR_LENGTH == len(data.encode())
    return repair(data.encode())

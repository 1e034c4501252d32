"""Fit ANY genome to the nearest stock llama.cpp architecture, then check it.

Stock llama.cpp graphs are stricter than our genome space (FACTS.md): ``lfm2`` wants one FFN width,
one conv kernel and ``n_heads * head_dim == d_model``; ``granitehybrid`` wants
``d_inner == 2 * d_model``; no graph runs linear attention or mixes short conv with Mamba-2; every
one wants RMSNorm. Without a fit, almost every mutant or crossover child would be refused.

The rule (deterministic: the same vector always gives the same fit):

1. For every allowed architecture (``allowed_archs``; default all seven of
   ``star.export.supported_targets``), ``star.search.arch_fit.fit_to`` builds the genome of that
   architecture made by the fewest per-layer edits (its module doc lists them).
2. Each candidate is scored by ``edit_cost`` against the input, layer by layer: a token-mixer
   class change costs 1, less between related kinds (``RELATED_MIXERS``: 0.5 full <-> sliding-
   window attention; 0.75 short conv <-> Mamba-2, linear attention <-> Mamba-2 or softmax
   attention), a channel-mixer class change 1, a norm change 0.1, and each changed featurizer
   gene 0.02 + 0.1 x min(1, |log2 of the ratio|), at most 0.9 per layer, so class changes
   dominate and among equal class changes the smaller shape edits win.
3. The cheapest candidate that exports (``check_exportable``: at the genome's own scale for
   ``fit_runtime``, at the deployment scale for ``make_constraint``) wins; ties go to the
   architecture listed first (lfm2, lfm2moe, qwen3, llama, mamba2, granitehybrid, nemotron_h).

An exportable genome costs 0 in its own architecture, so the fit leaves it unchanged. A mutant
therefore stays in its parent's family unless another family is strictly nearer: all short convs
of an LFM2 replaced by SSM blocks is nearer to ``granitehybrid`` (attention loses QK-norm) than
to ``lfm2`` (ten layers back to short conv), a shortconv + SSM crossover child goes to the family
of its majority, a linear-attention hybrid to ``qwen3``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from star.genome import Genome, repair
from star.genome.encoding import GenomeData, OperatorGenes
from star.genome.spec import ArchSpec, ChannelMixer, TokenMixer
from star.search.arch_fit import ARCHS, fit_to
from star.search.operators import Constraint
from star.search.prescreen import check_runtime

MIXER_CHANGE = 1.0
# Cheaper class changes between kinds that compute the same family of function.
_TM = TokenMixer
RELATED_MIXERS: dict[frozenset[TokenMixer], float] = {
    frozenset({_TM.ATTENTION, _TM.SWA}): 0.5,  # the same projections, a window mask
    frozenset({_TM.SHORTCONV, _TM.SSM}): 0.75,  # gated causal convs with constant state
    frozenset({_TM.LINEAR_ATTENTION, _TM.SSM}): 0.75,  # Mamba-2 = structured linear attention
    frozenset({_TM.LINEAR_ATTENTION, _TM.ATTENTION}): 0.75,  # same q/k/v/o, another kernel
}
CHANNEL_CHANGE = 1.0
NORM_CHANGE = 0.1
GENE_STEP = 0.02
GENE_SCALE = 0.1
LAYER_SHAPE_CAP = 0.9


@dataclass(frozen=True)
class Fit:
    """One candidate: the genome fitted into ``arch`` and its edit cost from the input.

    ``genes`` (the canonical vector) is computed on first use: callers usually need only the
    nearest candidate, and canonicalising all seven dominated the time of a fit."""

    arch: str
    cost: float
    data: GenomeData = field(repr=False, compare=False)

    @cached_property
    def genes(self) -> tuple[int, ...]:
        return repair(self.data.encode())


def layer_cost(before: OperatorGenes, after: OperatorGenes) -> float:
    """Edit cost of one layer (module doc, rule 2)."""
    cost = 0.0
    if before.mixer != after.mixer:
        cost += RELATED_MIXERS.get(frozenset({before.mixer, after.mixer}), MIXER_CHANGE)
    if before.channel != after.channel:
        cost += CHANNEL_CHANGE
    if before.norm != after.norm:
        cost += NORM_CHANGE
    shape = 0.0
    for name in set(before.active_features()) & set(after.active_features()):
        a, b = before.featurizer[name], after.featurizer[name]
        if a != b:
            size = 1.0 if min(a, b) <= 0 else min(1.0, abs(math.log2(a / b)))
            shape += GENE_STEP + GENE_SCALE * size
    return cost + min(shape, LAYER_SHAPE_CAP)


def edit_cost(before: GenomeData, after: GenomeData) -> float:
    """Sum of ``layer_cost`` over layers (fits never change depth or model genes); each
    distinct (operator before, operator after) pair is costed once."""
    assert len(before.layers) == len(after.layers)
    pairs = Counter(zip(before.layers, after.layers, strict=True))
    return sum(n * layer_cost(before.operators[a], after.operators[b])
               for (a, b), n in pairs.items())


def _key(values: Sequence[object] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(str(getattr(v, "value", v)) for v in values)


@lru_cache(maxsize=8192)
def _rank(vector: tuple[int, ...], archs: tuple[str, ...] | None,
          mixers: tuple[str, ...] | None, channels: tuple[str, ...] | None) -> tuple[Fit, ...]:
    data = GenomeData.decode(repair(vector))
    tms = [TokenMixer(m) for m in mixers] if mixers else None
    cms = [ChannelMixer(c) for c in channels] if channels else None
    fits: list[Fit] = []
    for arch in ARCHS:
        if archs is not None and arch not in archs:
            continue
        fitted = fit_to(data, arch, token_mixers=tms, channel_mixers=cms)
        if fitted is not None:
            fits.append(Fit(arch, round(edit_cost(data, fitted), 9), fitted))
    return tuple(sorted(fits, key=lambda f: (f.cost, ARCHS.index(f.arch))))


def rank_fits(vector: Sequence[int], *, allowed_archs: Sequence[str] | None = None,
              token_mixers: Sequence[TokenMixer] | None = None,
              channel_mixers: Sequence[ChannelMixer] | None = None) -> tuple[Fit, ...]:
    """One candidate per architecture that can hold the genome, nearest first (module doc)."""
    vec = tuple(int(x) for x in vector)
    archs = tuple(allowed_archs) if allowed_archs is not None else None
    return _rank(vec, archs, _key(token_mixers), _key(channel_mixers))


def fit_runtime(vector: Sequence[int], *, allowed_archs: Sequence[str] | None = None,
                token_mixers: Sequence[TokenMixer] | None = None,
                channel_mixers: Sequence[ChannelMixer] | None = None) -> tuple[int, ...]:
    """The nearest genome that a stock llama.cpp architecture (one of ``allowed_archs``) runs at
    the genome's own scale; never raises. When no candidate exports (the restrictions leave no
    architecture), the nearest candidate, or the repaired input when there is none."""
    allowed = tuple(allowed_archs) if allowed_archs is not None else None
    fits = rank_fits(vector, allowed_archs=allowed, token_mixers=token_mixers,
                     channel_mixers=channel_mixers)
    for fit in fits:
        if check_runtime(Genome(fit.genes).to_spec(), allowed).ok:
            return fit.genes
    return fits[0].genes if fits else repair(vector)


def make_constraint(
    deploy: Callable[[Genome], ArchSpec],
    *,
    allowed_archs: tuple[str, ...] | None = None,
    token_mixers: Sequence[TokenMixer] | None = None,
    channel_mixers: Sequence[ChannelMixer] | None = None,
) -> Constraint:
    """A pymoo-operator constraint: the nearest fit (``rank_fits``) whose deployment-scale spec
    stock llama.cpp runs (through one of ``allowed_archs`` if given); None when none does."""

    def constraint(vector: tuple[int, ...]) -> tuple[int, ...] | None:
        for fit in rank_fits(vector, allowed_archs=allowed_archs, token_mixers=token_mixers,
                             channel_mixers=channel_mixers):
            used = GenomeData.decode(fit.genes)
            ops = [used.operators[k] for k in set(used.layers)]
            if (token_mixers and any(op.mixer not in token_mixers for op in ops)) or (
                channel_mixers and any(op.channel not in channel_mixers for op in ops)
            ):
                continue
            if check_runtime(deploy(Genome(fit.genes)), allowed_archs).ok:
                return fit.genes
        return None

    return constraint


def make_open_constraint(
    deploy: Callable[[Genome], ArchSpec],
    *,
    token_mixers: Sequence[TokenMixer] | None = None,
    channel_mixers: Sequence[ChannelMixer] | None = None,
) -> Constraint:
    """The constraint of an unfenced search (runtime executorch: any operator on any layer): the
    canonical genome itself, if its operators are allowed and it has a deployment spec; else
    None (the operator then tries another child)."""

    def constraint(vector: tuple[int, ...]) -> tuple[int, ...] | None:
        genes = repair(vector)
        used = GenomeData.decode(genes)
        ops = [used.operators[k] for k in set(used.layers)]
        if (token_mixers and any(op.mixer not in token_mixers for op in ops)) or (
            channel_mixers and any(op.channel not in channel_mixers for op in ops)
        ):
            return None
        try:
            deploy(Genome(genes))
        except ValueError:  # e.g. the deployment scale cannot be applied to it
            return None
        return genes

    return constraint

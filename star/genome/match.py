"""Size-matched baselines: a genome rescaled to another genome's parameter count.

"Is LFM2-350M better than a Llama of the same size?" needs a Llama of the same size.
``match_params`` rescales GENOME to REF's parameter count and keeps everything else about
GENOME's architecture:

- **Vocabulary, embedding and context from REF** (``vocab_size``, ``tie_embeddings``,
  ``context_length``) by default, so the two models differ only in architecture and the
  embedding parameters are spent alike; ``keep_embedding=True`` keeps GENOME's (the count then
  includes GENOME's own embedding). RoPE theta and norm epsilon stay GENOME's (family numerics).
- **How it scales** (``by``):
  ``"width"`` (default): depth and layer pattern fixed; ``d_model`` moves in steps of 64 and every
  width follows it in proportion (attention and SSM head counts at a fixed head_dim, so
  ``n_heads * head_dim == d_model`` and ``d_inner == 2 * d_model`` keep holding and the GQA ratio
  is kept exactly; FFN and expert widths by the same ratio). The width whose count is nearest
  the target is chosen; widths at which a head or KV-head count would not be an integer are
  skipped (Llama-3.2's 32/8 heads of 64 move in steps of 256 channels).
  ``"depth"``: width fixed; the layer pattern is stretched to the nearest-count depth (layer i of
  n takes the operator of layer ``i * L // n`` of GENOME, so the mix and order are kept).
- **Trim**: the remainder is taken off the FFN: every dense FFN (and expert) width moves by the
  same number of 64-channel units, to the count nearest the target; a genome without FFNs
  (``mamba2``) is trimmed by depth instead. When the trimmed count is still outside the
  tolerance, the neighbouring widths (or depths) are tried too and the nearest count wins.

The target is REF's total parameter count (``count="total"``) or its non-embedding count
(``"non_embedding"``). ``MatchError`` says why no match lands within the tolerance. This module
only shapes genomes; whether the result exports is the caller's check (``star genome match``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from star.cost import ParamCounts, count_params
from star.genome.encoding import MAX_LAYERS, GenomeData
from star.genome.genome import Genome
from star.genome.repair import nearest_divisor
from star.genome.spec import ChannelMixer, TokenMixer
from star.genome.validate import InvalidGenome

Count = Literal["total", "non_embedding"]
By = Literal["width", "depth"]
REF_MODEL_GENES = ("vocab_size", "tie_embeddings", "context_length")
_MAX_UNITS = 256  # d_model gene bound (x 64)
_MAX_HEADS = 256
_MAX_FFN = 1024  # ffn_dim gene bound (x 64)
_NEIGHBOURS = 4


class MatchError(ValueError):
    """No genome of GENOME's shape lands within the tolerance of REF's count."""


@dataclass(frozen=True)
class MatchResult:
    """The matched genome, its counts, the target, and how it was scaled (for provenance)."""

    genome: Genome
    params: ParamCounts
    ref_params: ParamCounts
    target: int
    count: Count
    by: By
    d_model: int
    n_layers: int
    ffn_shift: int  # 64-channel units added to every FFN / expert width by the trim

    @property
    def error(self) -> float:
        """Relative error of the matched count against the target."""
        return (_value(self.params, self.count) - self.target) / self.target


def _value(counts: ParamCounts, count: Count) -> int:
    return counts.params if count == "total" else counts.non_embedding


def _with_ref_model(data: GenomeData, ref: GenomeData) -> GenomeData:
    model = dict(data.model)
    for name in REF_MODEL_GENES:
        model[name] = ref.model[name]
    return GenomeData(model, data.operators, data.layers, data.share)


def _copy(data: GenomeData) -> GenomeData:
    return GenomeData.decode(data.encode())


def at_width(data: GenomeData, units: int) -> GenomeData | None:
    """``data`` at ``d_model = 64 * units`` with every width in proportion (module doc);
    None when a head or KV-head count would not be an integer or a gene would leave its
    bounds."""
    out = _copy(data)
    d0 = data.model["d_model"]
    out.model["d_model"] = units
    for k in set(out.layers):
        op = out.operators[k]
        f = op.featurizer
        if op.mixer != TokenMixer.SHORTCONV:
            heads = f["heads"] * units
            if heads % d0 or not 1 <= heads // d0 <= _MAX_HEADS:
                return None
            new = heads // d0
            if op.mixer.is_attention:  # the GQA ratio is kept exactly: KV heads scale too
                if f["kv_heads"] * units % d0:
                    return None
                f["kv_heads"] = f["kv_heads"] * units // d0
            if op.mixer == TokenMixer.SSM:
                f["ssm_groups"] = nearest_divisor(new, f["ssm_groups"], 16)
            f["heads"] = new
        if op.channel != ChannelMixer.NONE:
            f["ffn_dim"] = max(1, round(f["ffn_dim"] * units / d0))
            if f["ffn_dim"] > _MAX_FFN:
                return None
    return out


def _kinds(data: GenomeData) -> tuple[set[TokenMixer], set[ChannelMixer]]:
    ops = [data.operators[k] for k in data.layers]
    return {op.mixer for op in ops}, {op.channel for op in ops}


def at_depth(data: GenomeData, n: int) -> GenomeData | None:
    """``data`` with ``n`` layers: layer i takes the operator (and sharing group) of layer
    ``i * L // n``, so the pattern is stretched or squeezed and its order kept; None when the
    squeezed stack would lose a kind of token or channel mixer (e.g. its only attention layer,
    which the hybrid archs require)."""
    depth = len(data.layers)
    src = [i * depth // n for i in range(n)]
    out = GenomeData(dict(data.model), data.operators, [data.layers[i] for i in src],
                     [data.share[i] for i in src])
    return out if _kinds(out) == _kinds(data) else None


def shift_ffn(data: GenomeData, delta: int) -> GenomeData | None:
    """Every FFN / expert width of ``data`` plus ``delta`` units of 64; None out of bounds."""
    out = _copy(data)
    for k in set(out.layers):
        op = out.operators[k]
        if op.channel != ChannelMixer.NONE:
            width = op.featurizer["ffn_dim"] + delta
            if not 1 <= width <= _MAX_FFN:
                return None
            op.featurizer["ffn_dim"] = width
    return out


def _counts(data: GenomeData) -> ParamCounts | None:
    try:
        return count_params(Genome.from_vector(data.encode()).to_spec())
    except (InvalidGenome, ValueError):
        return None


def _has_ffn(data: GenomeData) -> bool:
    return any(data.operators[k].channel != ChannelMixer.NONE for k in set(data.layers))


@dataclass(frozen=True)
class _Try:
    data: GenomeData
    value: int
    shift: int


def _best(tries: list[_Try], target: int) -> _Try | None:
    return min(tries, key=lambda t: abs(t.value - target), default=None)


def _trim(data: GenomeData, target: int, count: Count) -> _Try | None:
    """The FFN shift (or, without FFNs, the depth) that brings the count nearest ``target``."""
    if not _has_ffn(data):
        tries = []
        for n in range(1, MAX_LAYERS + 1):
            deep = at_depth(data, n)
            c = _counts(deep) if deep is not None else None
            if deep is not None and c is not None:
                tries.append(_Try(deep, _value(c, count), 0))
        return _best(tries, target)
    c0 = _counts(data)
    moved = shift_ffn(data, 1)
    c1 = _counts(moved) if moved is not None else None
    if c0 is None:
        return None
    v0 = _value(c0, count)
    slope = (_value(c1, count) - v0) if c1 is not None else 0
    guess = round((target - v0) / slope) if slope > 0 else 0
    tries = [_Try(data, v0, 0)]
    for delta in (guess - 1, guess, guess + 1):
        shifted = shift_ffn(data, delta)
        c = _counts(shifted) if shifted is not None else None
        if shifted is not None and c is not None:
            tries.append(_Try(shifted, _value(c, count), delta))
    return _best(tries, target)


def _nearest(options: list[tuple[int, GenomeData]], target: int, count: Count
             ) -> list[tuple[int, GenomeData]]:
    """The options (knob value, genome) sorted by how near their untrimmed count is."""
    scored = []
    for knob, data in options:
        c = _counts(data)
        if c is not None:
            scored.append((abs(_value(c, count) - target), knob, data))
    scored.sort(key=lambda s: (s[0], s[1]))
    return [(knob, data) for _, knob, data in scored]


def match_params(genome: Genome, ref: Genome, *, count: Count = "total", by: By = "width",
                 keep_embedding: bool = False, tolerance: float = 0.02) -> MatchResult:
    """GENOME rescaled to REF's parameter count (module doc); raises ``MatchError``."""
    ref_counts = count_params(ref.to_spec())
    target = _value(ref_counts, count)
    base = genome.data if keep_embedding else _with_ref_model(genome.data, ref.data)
    if by == "width":
        options = [(u, d) for u in range(1, _MAX_UNITS + 1)
                   if (d := at_width(base, u)) is not None]
    else:
        options = [(n, d) for n in range(1, MAX_LAYERS + 1)
                   if (d := at_depth(base, n)) is not None]
    ranked = _nearest(options, target, count)
    if not ranked:
        raise MatchError(f"{genome.name or 'genome'}: no {by} keeps its head counts integral")
    first_knob = ranked[0][0]
    near = sorted(ranked, key=lambda o: (abs(o[0] - first_knob), o[0]))[:2 * _NEIGHBOURS + 1]
    best: tuple[_Try, int] | None = None
    for knob, data in near:
        t = _trim(data, target, count)
        if t is None:
            continue
        if best is None or abs(t.value - target) < abs(best[0].value - target):
            best = (t, knob)
        if knob == first_knob and abs(t.value - target) <= tolerance * target:
            break  # the nearest-count width (or depth) already lands: keep its shape
    if best is None:
        raise MatchError(f"{genome.name or 'genome'}: no trimmed {by} gives a valid genome")
    found, _ = best
    error = (found.value - target) / target
    if abs(error) > tolerance:
        raise MatchError(
            f"the nearest {count} parameter count is {found.value:,} ({error:+.1%}) against "
            f"{target:,}: outside the tolerance of {tolerance:.1%} (try --by "
            f"{'depth' if by == 'width' else 'width'} or a larger --tolerance)")
    suffix = ref.name or ref.genome_id[:8]
    matched = Genome.from_vector(found.data.encode(),
                                 name=f"{genome.name or 'genome'}-matched-{suffix}")
    spec = matched.to_spec()
    return MatchResult(genome=matched, params=count_params(spec), ref_params=ref_counts,
                       target=target, count=count, by=by, d_model=spec.d_model,
                       n_layers=spec.n_layers, ffn_shift=found.shift)


__all__ = ["REF_MODEL_GENES", "MatchError", "MatchResult", "at_depth", "at_width",
           "match_params", "shift_ffn"]

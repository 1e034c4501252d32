"""Fit a genome into ONE stock llama.cpp architecture (``fit_to``), for any starting genome.

``star.search.runtime_fit`` builds one candidate per allowed architecture with ``fit_to`` and
keeps the nearest; this module holds what each architecture runs (FACTS.md, ``star.export``'s
checks) and the edits that bring a genome there. The edits are per layer and deterministic:

1. **Norm**: RMSNorm everywhere (the only norm of the exportable graphs).
2. **Token mixer**: a mixer the architecture (or the caller's ``token_mixers``) does not run is
   replaced by its nearest runnable kind, in the order of ``NEAREST_MIXER``: SSM and short conv
   replace each other (constant-state convolutional recurrences), linear attention becomes Mamba-2
   (its structured form, constant state) where that runs, else softmax attention; attention
   becomes Mamba-2 only in pure-SSM archs.
3. **Required kinds**: ``lfm2``/``lfm2moe`` need a short-conv and an attention layer,
   ``granitehybrid`` an SSM and an attention layer (without them this build crashes). A missing
   kind is made by converting ONE layer of the majority kind: preferably one already converted
   in step 2 (no extra edit), the one nearest the middle of the stack. ``lfm2moe`` needs an MoE
   layer (the last layer gets one), ``nemotron_h`` a squared-ReLU MLP (the middle layer).
4. **Shared shapes**: values an architecture wants uniform are taken from the first layer that
   had that kind before any conversion (else the first converted one, else ``new_*`` defaults):
   conv kernel; attention head_dim (the nearest that gives an integer head count), heads
   (``lfm2``: ``d_model / head_dim``), KV heads (uniform in ``qwen3``/``llama``, kept per layer
   where the runtime allows and rounded to a divisor), QK-norm (on for ``lfm2``/``qwen3``, off for
   ``llama``/``granitehybrid``), sliding window (``lfm2`` only, when every attention layer has
   one); SSM shape (``granitehybrid``: ``d_inner = 2 * d_model``); FFN width; MoE shape with
   sigmoid routing.
5. **Channel mixer**: SwiGLU in ``lfm2``/``qwen3``/``llama``/``granitehybrid``, none in
   ``mamba2``, squared-ReLU MLP or none in ``nemotron_h`` (widths may differ per layer there),
   ``lfm2moe``: dense SwiGLU before the first MoE layer, MoE from there on.

Model genes (width, vocabulary, numerics) and depth are never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from star.genome.encoding import (
    CHANNEL_MIXERS,
    MAX_OPERATORS,
    TOKEN_MIXERS,
    GenomeData,
    OperatorGenes,
)
from star.genome.repair import nearest_divisor
from star.genome.spec import ChannelMixer, TokenMixer

TM, CM = TokenMixer, ChannelMixer
_ATTN = frozenset({TM.ATTENTION, TM.SWA})


@dataclass(frozen=True)
class ArchRule:
    """What one stock llama.cpp architecture runs, as our operator classes."""

    mixers: frozenset[TokenMixer]
    channels: frozenset[ChannelMixer]
    needs: tuple[frozenset[TokenMixer], ...] = ()  # one layer of each group must be present


RULES: dict[str, ArchRule] = {  # order = tie-break order (star.export.supported_targets)
    "lfm2": ArchRule(frozenset({TM.SHORTCONV, TM.ATTENTION, TM.SWA}), frozenset({CM.SWIGLU}),
                     (frozenset({TM.SHORTCONV}), _ATTN)),
    "lfm2moe": ArchRule(frozenset({TM.SHORTCONV, TM.ATTENTION}),
                        frozenset({CM.SWIGLU, CM.MOE}), (frozenset({TM.SHORTCONV}), _ATTN)),
    "qwen3": ArchRule(frozenset({TM.ATTENTION}), frozenset({CM.SWIGLU})),
    "llama": ArchRule(frozenset({TM.ATTENTION}), frozenset({CM.SWIGLU})),
    "mamba2": ArchRule(frozenset({TM.SSM}), frozenset({CM.NONE})),
    "granitehybrid": ArchRule(frozenset({TM.SSM, TM.ATTENTION}), frozenset({CM.SWIGLU}),
                              (frozenset({TM.SSM}), _ATTN)),
    "nemotron_h": ArchRule(frozenset({TM.SSM}), frozenset({CM.MLP, CM.NONE})),
}
ARCHS: tuple[str, ...] = tuple(RULES)

# Replacement order for a token mixer the architecture does not run (first runnable one wins).
NEAREST_MIXER: dict[TokenMixer, tuple[TokenMixer, ...]] = {
    TM.ATTENTION: (TM.ATTENTION, TM.SWA, TM.SSM, TM.SHORTCONV),
    TM.SWA: (TM.SWA, TM.ATTENTION, TM.SSM, TM.SHORTCONV),
    TM.SHORTCONV: (TM.SHORTCONV, TM.SSM, TM.ATTENTION, TM.SWA),
    TM.SSM: (TM.SSM, TM.SHORTCONV, TM.ATTENTION, TM.SWA),
    TM.LINEAR_ATTENTION: (TM.SSM, TM.ATTENTION, TM.SWA, TM.SHORTCONV),
}
NEAREST_CHANNEL: dict[ChannelMixer, tuple[ChannelMixer, ...]] = {
    CM.SWIGLU: (CM.SWIGLU, CM.MLP, CM.MOE, CM.NONE),
    CM.MLP: (CM.MLP, CM.SWIGLU, CM.MOE, CM.NONE),
    CM.MOE: (CM.MOE, CM.SWIGLU, CM.MLP, CM.NONE),
    CM.NONE: (CM.NONE, CM.SWIGLU, CM.MLP, CM.MOE),
}

# Shapes of a kind the genome did not have (stored gene units: head_dim and ssm_state x 8).
NEW_HEAD_DIM = 8  # 64: LFM2, Llama, Qwen3 and Mamba-2 all use 64-wide heads
NEW_KV_RATIO = 2  # GQA: two query heads per KV head (LFM2's 16/8)
NEW_SSM_STATE = 16  # 128 (Mamba-2)
NEW_SSM_KERNEL = 4  # Mamba-2's conv kernel
NEW_CONV_KERNEL = 3  # LFM2's short-conv kernel
NEW_MOE = {"experts": 32, "top_k": 4, "expert_bias": 1}  # LFM2-8B-A1B; expert width = dense / 4
MAX_HEADS = 256


def _copy(op: OperatorGenes) -> OperatorGenes:
    return OperatorGenes(op.token_mixer, op.channel_mixer, op.norm, dict(op.featurizer))


def _set_mixer(op: OperatorGenes, mixer: TokenMixer) -> None:
    op.token_mixer = TOKEN_MIXERS.index(mixer)


def _set_channel(op: OperatorGenes, channel: ChannelMixer) -> None:
    op.channel_mixer = CHANNEL_MIXERS.index(channel)


def head_dim_for(width: int, want: int) -> tuple[int, int]:
    """(head_dim units of 8, heads) with ``heads * head_dim == width``, heads <= 256, head_dim
    nearest ``want`` (ties to the smaller). ``width`` is a multiple of 64, so one exists."""
    valid = [u for u in range(1, 65) if width % (8 * u) == 0 and width // (8 * u) <= MAX_HEADS]
    u = min(valid, key=lambda x: (abs(x - want), x))
    return u, width // (8 * u)


def _pick(layers: Sequence[int], n: int, changed: set[int]) -> int:
    """The layer to convert: one already changed if any, the one nearest the middle."""
    pool = [i for i in layers if i in changed] or list(layers)
    return min(pool, key=lambda i: (abs(2 * i - (n - 1)), i))


def _first(orig: Sequence[OperatorGenes], ops: Sequence[OperatorGenes],
           kinds: frozenset[TokenMixer]) -> OperatorGenes | None:
    """Reference layer for ``kinds``: the first that had it before conversion, else after."""
    for group in (orig, ops):
        for op in group:
            if op.mixer in kinds:
                return op
    return None


def _map_mixers(ops: list[OperatorGenes], runnable: frozenset[TokenMixer]) -> bool:
    for op in ops:
        op.norm = 0
        choice = next((m for m in NEAREST_MIXER[op.mixer] if m in runnable), None)
        if choice is None:
            return False
        _set_mixer(op, choice)
    return True


def _force_kinds(rule: ArchRule, ops: list[OperatorGenes], orig: Sequence[OperatorGenes],
                 runnable: frozenset[TokenMixer]) -> bool:
    """Convert one layer per missing required kind; False when the stack is too short."""
    for need in rule.needs:
        if any(op.mixer in need for op in ops):
            continue
        target = TM.ATTENTION if TM.ATTENTION in need & runnable else next(
            iter(sorted(need & runnable, key=TOKEN_MIXERS.index)), None)
        if target is None:
            return False
        counts: dict[TokenMixer, list[int]] = {}
        for i, op in enumerate(ops):
            if not any(op.mixer in other for other in rule.needs if other is not need):
                continue
            counts.setdefault(op.mixer, []).append(i)
        donors = max(counts.values(), key=len, default=[])
        if len(donors) < 2:  # converting the only layer of a required kind helps nothing
            return False
        changed = {i for i, (a, b) in enumerate(zip(orig, ops, strict=True))
                   if a.mixer != b.mixer}
        _set_mixer(ops[_pick(donors, len(ops), changed)], target)
    return True


def _fit_conv(ops: list[OperatorGenes], orig: Sequence[OperatorGenes]) -> None:
    convs = [op for op in ops if op.mixer == TM.SHORTCONV]
    if not convs:
        return
    ref = _first(orig, ops, frozenset({TM.SHORTCONV}))
    if ref is not None and ref.mixer == TM.SHORTCONV:
        kernel = ref.featurizer["conv_kernel"]
    else:  # no short conv before: an SSM's conv kernel is the nearest, else LFM2's
        ssm = _first(orig, (), frozenset({TM.SSM}))
        kernel = ssm.featurizer["conv_kernel"] if ssm is not None else NEW_CONV_KERNEL
    for op in convs:
        op.featurizer["conv_kernel"] = kernel


def _fit_attention(arch: str, ops: list[OperatorGenes], orig: Sequence[OperatorGenes],
                   d_model: int, runnable: frozenset[TokenMixer]) -> None:
    attn = [i for i, op in enumerate(ops) if op.mixer in _ATTN]
    if not attn:
        return
    was_attn = [orig[i].mixer in _ATTN for i in attn]
    ref = next((orig[i] for i, w in zip(attn, was_attn, strict=True) if w), None)
    lfm2 = arch in ("lfm2", "lfm2moe")
    if ref is not None:
        hd, heads, kv = (ref.featurizer[k] for k in ("head_dim", "heads", "kv_heads"))
    else:
        hd, heads = head_dim_for(d_model, NEW_HEAD_DIM)
        kv = max(1, heads // NEW_KV_RATIO)
    if lfm2:  # one head count with n_heads * head_dim == d_model
        hd, heads = head_dim_for(d_model, hd)
    qk = {"lfm2": 1, "lfm2moe": 1, "qwen3": 1}.get(arch, 0)
    swa = [ops[i] for i in attn if ops[i].mixer == TM.SWA]
    keep_swa = TM.SWA in runnable and (len(swa) == len(attn) or TM.ATTENTION not in runnable)
    window = swa[0].featurizer["window"] if swa else None
    uniform_kv = arch in ("qwen3", "llama")
    for i, was in zip(attn, was_attn, strict=True):
        f = ops[i].featurizer
        own_kv = f["kv_heads"] if was and not uniform_kv else kv
        f["head_dim"], f["heads"], f["qk_norm"] = hd, heads, qk
        f["kv_heads"] = nearest_divisor(heads, own_kv, MAX_HEADS)
        if keep_swa:
            _set_mixer(ops[i], TM.SWA)
            if window is not None:
                f["window"] = window
        else:
            _set_mixer(ops[i], TM.ATTENTION)


def _fit_ssm(arch: str, ops: list[OperatorGenes], orig: Sequence[OperatorGenes],
             d_model: int) -> None:
    ssms = [op for op in ops if op.mixer == TM.SSM]
    if not ssms:
        return
    ref = next((op for op in orig if op.mixer == TM.SSM), None)
    if ref is not None:
        shape = {k: ref.featurizer[k]
                 for k in ("heads", "head_dim", "ssm_state", "ssm_groups", "conv_kernel")}
    else:  # Mamba-2 defaults: expand 2, 64-wide heads, state 128, one group, kernel 4
        hd, heads = head_dim_for(2 * d_model, NEW_HEAD_DIM)
        shape = {"heads": heads, "head_dim": hd, "ssm_state": NEW_SSM_STATE, "ssm_groups": 1,
                 "conv_kernel": NEW_SSM_KERNEL}
    if arch == "granitehybrid":  # llama.cpp asserts d_inner == 2 * d_model
        shape["head_dim"], shape["heads"] = head_dim_for(2 * d_model, shape["head_dim"])
    shape["ssm_groups"] = nearest_divisor(shape["heads"], shape["ssm_groups"], 16)
    for op in ssms:
        op.featurizer.update(shape)


def default_ffn_units(d_model: int) -> int:
    """SwiGLU width of a model that had none: 8/3 x d_model rounded up to 64 (units of 64)."""
    return min(1024, -(-8 * d_model // (3 * 64)))


def _ref_width(orig: Sequence[OperatorGenes], d_model: int) -> int:
    for kind in (CM.SWIGLU, CM.MLP):
        for op in orig:
            if op.channel == kind:
                return op.featurizer["ffn_dim"]
    return default_ffn_units(d_model)


def _fit_channels(arch: str, ops: list[OperatorGenes], orig: Sequence[OperatorGenes],
                  d_model: int, runnable: frozenset[ChannelMixer]) -> bool:
    width = _ref_width(orig, d_model)
    if arch == "lfm2moe":
        return _fit_moe(ops, orig, width, runnable)
    for op, before in zip(ops, orig, strict=True):
        choice = next((c for c in NEAREST_CHANNEL[op.channel] if c in runnable), None)
        if choice is None:
            return False
        _set_channel(op, choice)
        dense_before = before.channel in (CM.SWIGLU, CM.MLP)
        if choice == CM.SWIGLU or (choice == CM.MLP and not dense_before):
            op.featurizer["ffn_dim"] = width  # uniform SwiGLU; a new MLP gets the reference
    if arch == "nemotron_h" and not any(op.channel == CM.MLP for op in ops):
        if CM.MLP not in runnable:
            return False
        op = ops[_pick(range(len(ops)), len(ops), set())]
        _set_channel(op, CM.MLP)
        op.featurizer["ffn_dim"] = width
    return True


def _fit_moe(ops: list[OperatorGenes], orig: Sequence[OperatorGenes], width: int,
             runnable: frozenset[ChannelMixer]) -> bool:
    """lfm2moe: dense SwiGLU layers first, then MoE of one shape with sigmoid routing."""
    if CM.MOE not in runnable:
        return False
    ref = next((op for op in orig if op.channel == CM.MOE), None)
    first = next((i for i, op in enumerate(orig) if op.channel == CM.MOE), len(ops) - 1)
    if CM.SWIGLU not in runnable:
        first = 0
    shape = ({k: ref.featurizer[k] for k in ("experts", "top_k", "ffn_dim")} if ref is not None
             else {"experts": NEW_MOE["experts"], "top_k": NEW_MOE["top_k"],
                   "ffn_dim": max(1, width // 4)})
    for i, (op, before) in enumerate(zip(ops, orig, strict=True)):
        if i < first:
            _set_channel(op, CM.SWIGLU)
            op.featurizer["ffn_dim"] = width
            continue
        _set_channel(op, CM.MOE)
        op.featurizer.update(shape)
        op.featurizer["routing"] = 1
        if before.channel != CM.MOE:
            op.featurizer["expert_bias"] = ref.featurizer["expert_bias"] if ref else 1
    return True


def _intern(data: GenomeData, ops: list[OperatorGenes]) -> GenomeData:
    """Per-layer operators -> at most MAX_OPERATORS operator genomes (see module doc of
    ``star.genome.repair``). When more remain, the rarest is merged into the most used operator
    of the same classes: they differ only in per-layer genes the runtime allows to differ."""
    keys: dict[tuple[int, ...], int] = {}
    unique: list[OperatorGenes] = []
    layers: list[int] = []
    for op in ops:
        key = op.key()
        if key not in keys:
            keys[key] = len(unique)
            unique.append(op)
        layers.append(keys[key])
    while len(unique) > MAX_OPERATORS:
        counts = [layers.count(k) for k in range(len(unique))]
        cls = [(op.token_mixer, op.channel_mixer, op.norm) for op in unique]
        mergeable = [k for k in range(len(unique)) if cls.count(cls[k]) > 1]
        drop = min(mergeable, key=lambda k: (counts[k], -k))
        into = max((k for k in mergeable if cls[k] == cls[drop] and k != drop),
                   key=lambda k: (counts[k], -k))
        layers = [into if k == drop else k for k in layers]
        layers = [k - (k > drop) for k in layers]
        del unique[drop]
    return GenomeData(model=dict(data.model), operators=unique, layers=layers,
                      share=list(data.share))


def fit_to(data: GenomeData, arch: str, *,
           token_mixers: Sequence[TokenMixer] | None = None,
           channel_mixers: Sequence[ChannelMixer] | None = None) -> GenomeData | None:
    """``data`` (a repaired genome) brought into ``arch`` by the rules of the module doc, using
    only the allowed mixers; None when that architecture cannot hold it (a required kind is not
    allowed, or the stack is too short to hold every required kind)."""
    rule = RULES[arch]
    mixers = rule.mixers & frozenset(token_mixers) if token_mixers else rule.mixers
    channels = rule.channels & frozenset(channel_mixers) if channel_mixers else rule.channels
    if not mixers or not channels or any(not (need & mixers) for need in rule.needs):
        return None
    orig = [data.operators[k] for k in data.layers]
    ops = [_copy(op) for op in orig]
    d_model = data.model["d_model"] * 64
    if not _map_mixers(ops, mixers) or not _force_kinds(rule, ops, orig, mixers):
        return None
    _fit_conv(ops, orig)
    _fit_attention(arch, ops, orig, d_model, mixers)
    _fit_ssm(arch, ops, orig, d_model)
    if not _fit_channels(arch, ops, orig, d_model, channels):
        return None
    return _intern(data, ops)

"""Fit a genome to the llama.cpp architecture family it already belongs to, then check it.

Stock llama.cpp graphs are stricter than our genome space (FACTS.md): ``lfm2`` wants one FFN width,
one conv kernel, one attention head count with ``n_heads * head_dim == d_model`` and QK-norm;
pure-attention archs want uniform heads; every exportable arch wants RMSNorm. A mutation that
changes one operator's FFN width, or the model width, would otherwise almost always leave the
runtime (about half of single mutations of LFM2-350M do). ``fit_runtime`` makes the *smallest*
edits that bring a genome back into its family, deterministically (no randomness: the same vector
always gives the same fit), taking every shared value from the first layer that has it:

- every operator in use: RMSNorm; token and channel mixers restricted to the allowed ones;
- short conv present, no SSM (``lfm2``): attention gets QK-norm, one head_dim dividing d_model and
  ``n_heads = d_model / head_dim``; one conv kernel; dense FFNs become SwiGLU of one width;
  sliding windows are kept only if every attention operator has the same one;
- attention only (``llama`` / ``qwen3``): one head count, KV head count, head_dim, QK-norm and
  SwiGLU width; no sliding window;
- SSM present: one SSM shape.

``make_constraint`` wraps this with the export check of the *deployment-scale* spec (what is
exported and measured), for the pymoo operators' ``constraint`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from star.genome import Genome, repair
from star.genome.encoding import CHANNEL_MIXERS, TOKEN_MIXERS, GenomeData, OperatorGenes
from star.genome.repair import nearest_divisor
from star.genome.spec import ArchSpec, ChannelMixer, TokenMixer
from star.search.operators import Constraint
from star.search.prescreen import check_runtime

_ATTN = (TokenMixer.ATTENTION, TokenMixer.SWA)


def _index(options: Sequence[object], value: object) -> int:
    return list(options).index(value)


def _restrict(op: OperatorGenes, mixers: Sequence[TokenMixer] | None,
              channels: Sequence[ChannelMixer] | None) -> None:
    if mixers and op.mixer not in mixers:
        # attention-like stays attention-like where possible, else the first allowed mixer
        same = [m for m in mixers if (m in _ATTN) == (op.mixer in _ATTN)]
        op.token_mixer = _index(TOKEN_MIXERS, (same or list(mixers))[0])
    if channels and op.channel not in channels:
        op.channel_mixer = _index(CHANNEL_MIXERS, channels[0])
    op.norm = 0  # RMSNorm: the only norm of the exportable graphs


def _fit_attention(ops: list[OperatorGenes], d_model: int | None, *, qk_norm: int | None,
                   uniform_kv: bool, keep_window: bool) -> None:
    """One head count and head_dim over ``ops`` (and q width == d_model when given)."""
    first = ops[0].featurizer
    head_dim = first["head_dim"]  # units of 8
    if d_model is not None:
        # the largest head_dim <= the first one that divides d_model (d_model is a multiple of 64)
        while head_dim > 1 and d_model % (head_dim * 8):
            head_dim -= 1
        heads = max(1, min(256, d_model // (head_dim * 8)))
    else:
        heads = first["heads"]
    kv = nearest_divisor(heads, first["kv_heads"], 256)
    windows = {op.featurizer["window"] for op in ops if op.mixer == TokenMixer.SWA}
    all_swa = all(op.mixer == TokenMixer.SWA for op in ops)
    for op in ops:
        f = op.featurizer
        f["head_dim"], f["heads"] = head_dim, heads
        f["kv_heads"] = kv if uniform_kv else nearest_divisor(heads, f["kv_heads"], 256)
        if qk_norm is not None:
            f["qk_norm"] = qk_norm
        if op.mixer == TokenMixer.SWA and not (keep_window and all_swa and len(windows) == 1):
            op.token_mixer = _index(TOKEN_MIXERS, TokenMixer.ATTENTION)


def _fit_dense_ffn(ops: list[OperatorGenes]) -> None:
    swiglu = _index(CHANNEL_MIXERS, ChannelMixer.SWIGLU)
    width = ops[0].featurizer["ffn_dim"]
    for op in ops:
        op.channel_mixer = swiglu
        op.featurizer["ffn_dim"] = width


def fit_runtime(vector: Sequence[int], *, token_mixers: Sequence[TokenMixer] | None = None,
                channel_mixers: Sequence[ChannelMixer] | None = None) -> tuple[int, ...]:
    """The nearest genome of the same llama.cpp family (see the module doc); never raises."""
    data = GenomeData.decode(repair(vector))
    order: list[int] = []  # operators in order of first use
    for k in data.layers:
        if k not in order:
            order.append(k)
    ops = [data.operators[k] for k in order]
    for op in ops:
        _restrict(op, token_mixers, channel_mixers)
        if op.mixer == TokenMixer.LINEAR_ATTENTION:  # runs nowhere: nearest is attention
            allowed = token_mixers or TOKEN_MIXERS
            if TokenMixer.ATTENTION in allowed:
                op.token_mixer = _index(TOKEN_MIXERS, TokenMixer.ATTENTION)
    kinds = {op.mixer for op in ops}
    attn = [op for op in ops if op.mixer in _ATTN]
    d_model = data.model["d_model"] * 64
    if TokenMixer.SHORTCONV in kinds and TokenMixer.SSM not in kinds:  # lfm2 / lfm2moe
        if attn:
            _fit_attention(attn, d_model, qk_norm=1, uniform_kv=False, keep_window=True)
        convs = [op for op in ops if op.mixer == TokenMixer.SHORTCONV]
        for op in convs:
            op.featurizer["conv_kernel"] = convs[0].featurizer["conv_kernel"]
        if not any(op.channel == ChannelMixer.MOE for op in ops):
            _fit_dense_ffn(ops)
    elif kinds and kinds <= set(_ATTN):  # llama / qwen3
        _fit_attention(attn, None, qk_norm=attn[0].featurizer["qk_norm"], uniform_kv=True,
                       keep_window=False)
        _fit_dense_ffn(ops)
    elif TokenMixer.SSM in kinds:  # mamba2 / granitehybrid / nemotron_h
        ssms = [op for op in ops if op.mixer == TokenMixer.SSM]
        shape = ("heads", "head_dim", "ssm_state", "ssm_groups", "conv_kernel")
        for op in ssms[1:]:
            for name in shape:
                op.featurizer[name] = ssms[0].featurizer[name]
    return repair(data.encode())


def make_constraint(
    deploy: Callable[[Genome], ArchSpec],
    *,
    allowed_archs: tuple[str, ...] | None = None,
    token_mixers: Sequence[TokenMixer] | None = None,
    channel_mixers: Sequence[ChannelMixer] | None = None,
) -> Constraint:
    """A pymoo-operator constraint: fit to the runtime family, then require that stock llama.cpp
    (one of ``allowed_archs`` if given) runs the deployment-scale spec; else None (rejected)."""

    def constraint(vector: tuple[int, ...]) -> tuple[int, ...] | None:
        fitted = fit_runtime(vector, token_mixers=token_mixers, channel_mixers=channel_mixers)
        if token_mixers or channel_mixers:
            used = GenomeData.decode(fitted)
            for k in set(used.layers):
                op = used.operators[k]
                if (token_mixers and op.mixer not in token_mixers) or (
                    channel_mixers and op.channel not in channel_mixers
                ):
                    return None
        return fitted if check_runtime(deploy(Genome(fitted)), allowed_archs).ok else None

    return constraint

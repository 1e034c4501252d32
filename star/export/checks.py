"""Per-target checks: does a target's llama.cpp graph compute exactly what ``star.nn`` does?

Each check raises ``UnsupportedGenome`` at the first layer that target cannot run, naming the
operator and the reason. ``star.export.targets`` picks the target; this module holds the rules.
"""

from __future__ import annotations

from collections.abc import Callable

from star.export.errors import UnsupportedGenome
from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    ChannelMixer,
    FFNSpec,
    LayerSpec,
    MoESpec,
    Routing,
    ShortConvSpec,
    SSMSpec,
    TokenMixer,
)


def _attn(layer: LayerSpec) -> AttentionSpec:
    assert isinstance(layer.mixer, AttentionSpec)
    return layer.mixer


def _conv(layer: LayerSpec) -> ShortConvSpec:
    assert isinstance(layer.mixer, ShortConvSpec)
    return layer.mixer


def _ssm(layer: LayerSpec) -> SSMSpec:
    assert isinstance(layer.mixer, SSMSpec)
    return layer.mixer


def _ffn(layer: LayerSpec) -> FFNSpec:
    assert isinstance(layer.channel, FFNSpec)
    return layer.channel


def _moe(layer: LayerSpec) -> MoESpec:
    assert isinstance(layer.channel, MoESpec)
    return layer.channel


def channel_name(layer: LayerSpec) -> str:
    return layer.channel.kind.value if layer.channel is not None else ChannelMixer.NONE.value


def _fail(layer: LayerSpec | None, operator: str, reason: str, target: str) -> UnsupportedGenome:
    return UnsupportedGenome(
        layer=layer.index if layer is not None else None,
        operator=operator,
        reason=reason,
        target=target,
    )


def _uniform(
    spec: ArchSpec,
    layers: list[LayerSpec],
    key: Callable[[LayerSpec], object],
    what: str,
    operator: str,
    target: str,
) -> None:
    """All ``layers`` agree on ``key``; else fail at the first that differs from the first."""
    if not layers:
        return
    first = key(layers[0])
    for layer in layers[1:]:
        if key(layer) != first:
            raise _fail(
                layer,
                operator,
                f"{target} needs one {what} for all layers: layer {layers[0].index} has "
                f"{first}, this layer has {key(layer)}",
                target,
            )


def _only_mixers(spec: ArchSpec, allowed: tuple[type, ...], what: str, target: str) -> None:
    for layer in spec.layers:
        if not isinstance(layer.mixer, allowed):
            raise _fail(layer, layer.mixer.kind.value, f"{target} runs only {what}", target)


# Where a channel mixer that the chosen target refuses could run instead.
_CHANNEL_HINT = {
    "mlp": " (squared-ReLU MLPs run only in nemotron_h: Mamba-2 stacks without attention)",
    "moe": " (MoE runs only in lfm2moe: short conv + attention, sigmoid routing)",
    "none": " (layers without FFN run only in mamba2 / nemotron_h: Mamba-2 without attention)",
}


def _check_swiglu(spec: ArchSpec, layers: list[LayerSpec], target: str) -> None:
    for layer in layers:
        if not (isinstance(layer.channel, FFNSpec) and layer.channel.kind == ChannelMixer.SWIGLU):
            name = channel_name(layer)
            which = "layer" if len(layers) == spec.n_layers else "dense layer"
            raise _fail(
                layer,
                name,
                f"{target} needs a SwiGLU FFN after every {which}{_CHANNEL_HINT.get(name, '')}",
                target,
            )
    _uniform(spec, layers, lambda la: _ffn(la).ffn_dim, "FFN width", "swiglu", target)


def _check_attention(
    spec: ArchSpec,
    layers: list[LayerSpec],
    target: str,
    *,
    qk_norm: bool,
    swa: bool,
    uniform_kv: bool,
    q_is_d_model: bool,
) -> None:
    for layer in layers:
        m = layer.mixer
        assert isinstance(m, AttentionSpec)
        op = m.kind.value
        if m.qk_norm != qk_norm:
            why = "requires QK-norm" if qk_norm else "has no QK-norm (its graph never applies one)"
            raise _fail(layer, op, f"{target} attention {why}", target)
        if m.window > 0 and not swa:
            raise _fail(layer, op, f"{target} has no sliding-window attention", target)
        if m.head_dim % 2:
            raise _fail(layer, op, "RoPE needs an even head_dim", target)
        if m.n_heads % m.n_kv_heads:
            raise _fail(layer, op, "n_heads must be a multiple of n_kv_heads", target)
        if q_is_d_model and m.q_dim != spec.d_model:
            raise _fail(
                layer,
                op,
                f"{target} needs n_heads * head_dim == d_model "
                f"({m.n_heads} * {m.head_dim} != {spec.d_model})",
                target,
            )
    op = "attention"
    _uniform(spec, layers, lambda la: _attn(la).n_heads, "attention head count", op, target)
    _uniform(spec, layers, lambda la: _attn(la).head_dim, "attention head_dim", op, target)
    if uniform_kv:
        _uniform(spec, layers, lambda la: _attn(la).n_kv_heads, "KV head count", op, target)
    if swa:
        _uniform(
            spec,
            layers,
            lambda la: _attn(la).window,
            "sliding window (0 = full attention)",
            op,
            target,
        )


def _check_ssm(spec: ArchSpec, layers: list[LayerSpec], target: str) -> None:
    def shape(la: LayerSpec) -> tuple[int, ...]:
        m = _ssm(la)
        return (m.n_heads, m.head_dim, m.state, m.n_groups, m.conv_kernel)

    _uniform(
        spec, layers, shape, "SSM shape (heads, head_dim, state, groups, kernel)", "ssm", target
    )
    for layer in layers:
        m = layer.mixer
        assert isinstance(m, SSMSpec)
        if m.n_heads % m.n_groups:
            raise _fail(layer, "ssm", "SSM heads must be a multiple of its groups", target)
        if m.conv_kernel < 2:
            raise _fail(layer, "ssm", "the SSM conv kernel must be >= 2", target)


def _check_lfm2_family(spec: ArchSpec, target: str) -> None:
    _only_mixers(spec, (ShortConvSpec, AttentionSpec), "short conv and attention", target)
    convs = spec.layers_of(TokenMixer.SHORTCONV)
    attns = spec.attention_layers
    if not convs or not attns:
        missing = "short-conv" if not convs else "attention"
        raise _fail(
            None,
            "shortconv" if not convs else "attention",
            f"{target} needs at least one {missing} layer: a pure stack loads and then "
            "crashes this llama.cpp build on the first decode",
            target,
        )
    _uniform(spec, convs, lambda la: _conv(la).kernel, "short-conv kernel", "shortconv", target)
    if _conv(convs[0]).kernel < 2:
        raise _fail(convs[0], "shortconv", "the conv kernel must be >= 2", target)
    _check_attention(
        spec, attns, target, qk_norm=True, swa=target == "lfm2", uniform_kv=False, q_is_d_model=True
    )


def _check_lfm2(spec: ArchSpec, target: str) -> None:
    _check_lfm2_family(spec, target)
    _check_swiglu(spec, list(spec.layers), target)


def _dense_then_moe(spec: ArchSpec, target: str) -> list[tuple[LayerSpec, MoESpec]]:
    """The MoE layers of an lfm2moe stack, after checking its layout: SwiGLU layers first, then
    MoE in every layer (llama.cpp and transformers both take ``n_dense`` leading dense layers)."""
    n_dense = 0
    while n_dense < spec.n_layers and not isinstance(spec.layers[n_dense].channel, MoESpec):
        n_dense += 1
    _check_swiglu(spec, list(spec.layers[:n_dense]), target)
    moe_layers = []
    for layer in spec.layers[n_dense:]:
        c = layer.channel
        if not isinstance(c, MoESpec):
            raise _fail(
                layer,
                channel_name(layer),
                f"{target}: dense SwiGLU layers must all come before the first MoE layer "
                f"(layer {n_dense})",
                target,
            )
        moe_layers.append((layer, c))
    return moe_layers


def _check_lfm2moe(spec: ArchSpec, target: str) -> None:
    _check_lfm2_family(spec, target)
    moe_layers = _dense_then_moe(spec, target)
    for layer, c in moe_layers:
        if c.routing != Routing.SIGMOID:
            raise _fail(
                layer,
                "moe",
                f"{target} routes with sigmoid (+ selection bias); "
                f"{c.routing.value} routing is not its graph",
                target,
            )
        if not 0 < c.top_k <= c.n_experts:
            raise _fail(layer, "moe", "top_k must be in 1..n_experts", target)

    def shape(la: LayerSpec) -> tuple[int, int, int]:
        c = _moe(la)
        return (c.n_experts, c.top_k, c.expert_dim)

    what = "MoE shape (experts, top_k, expert width)"
    _uniform(spec, [la for la, _ in moe_layers], shape, what, "moe", target)


def _check_pure_attention(spec: ArchSpec, target: str) -> None:
    _only_mixers(spec, (AttentionSpec,), "attention", target)
    _check_attention(
        spec,
        list(spec.layers),
        target,
        qk_norm=target == "qwen3",
        swa=False,
        uniform_kv=True,
        q_is_d_model=False,
    )
    _check_swiglu(spec, list(spec.layers), target)


def _check_mamba2(spec: ArchSpec, target: str) -> None:
    _only_mixers(spec, (SSMSpec,), "Mamba-2", target)
    for layer in spec.layers:
        if layer.channel is not None:
            raise _fail(layer, channel_name(layer), f"{target} layers have no FFN", target)
    _check_ssm(spec, list(spec.layers), target)


def _check_granitehybrid(spec: ArchSpec, target: str) -> None:
    _only_mixers(spec, (SSMSpec, AttentionSpec), "Mamba-2 and attention", target)
    _check_swiglu(spec, list(spec.layers), target)
    if not spec.attention_layers:
        raise _fail(
            None,
            "ssm",
            f"{target} needs at least one attention layer: without one llama.cpp aborts "
            "creating the context (empty KV cache); pure Mamba-2 runs as mamba2, without FFNs",
            target,
        )
    ssms = spec.layers_of(TokenMixer.SSM)
    _check_ssm(spec, ssms, target)
    d_inner = _ssm(ssms[0]).d_inner
    if d_inner != 2 * spec.d_model:
        raise _fail(
            ssms[0],
            "ssm",
            f"{target} asserts d_inner == 2 * d_model ({d_inner} != 2 * {spec.d_model})",
            target,
        )
    _check_attention(
        spec,
        spec.attention_layers,
        target,
        qk_norm=False,
        swa=False,
        uniform_kv=False,
        q_is_d_model=False,
    )


def _check_nemotron_h(spec: ArchSpec, target: str) -> None:
    """Mamba-2 layers, each followed by a squared-ReLU MLP or by nothing (GGUF and transformers:
    the Hugging Face check adds its one-MLP-width rule)."""
    for layer in spec.layers:
        if isinstance(layer.mixer, AttentionSpec):
            raise _fail(
                layer,
                layer.mixer.kind.value,
                f"{target} attention has no positional encoding; ours applies RoPE",
                target,
            )
        if not isinstance(layer.mixer, SSMSpec):
            raise _fail(layer, layer.mixer.kind.value, f"{target}: only Mamba-2 is mapped", target)
        c = layer.channel
        if c is not None and not (isinstance(c, FFNSpec) and c.kind == ChannelMixer.MLP):
            raise _fail(
                layer, channel_name(layer), f"{target} FFNs are ungated squared-ReLU MLPs", target
            )
    _check_ssm(spec, list(spec.layers), target)


CHECKS: dict[str, Callable[[ArchSpec, str], None]] = {
    "lfm2": _check_lfm2,
    "lfm2moe": _check_lfm2moe,
    "qwen3": _check_pure_attention,
    "llama": _check_pure_attention,
    "mamba2": _check_mamba2,
    "granitehybrid": _check_granitehybrid,
    "nemotron_h": _check_nemotron_h,
}

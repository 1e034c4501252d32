"""One layer: ``h = x + mixer(mixer_norm(x))``, then ``h + ffn(ffn_norm(h))`` if it has an FFN.

The operator classes come from two small tables keyed by the spec's enums, so adding an operator
is one class plus one table row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Unpack

import torch
from torch import nn

from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    ChannelMixer,
    ChannelMixerSpec,
    FFNSpec,
    LinearAttentionSpec,
    MoESpec,
    ShortConvSpec,
    SSMSpec,
    TokenMixer,
    TokenMixerSpec,
)
from star.nn.attention import Attention
from star.nn.cache import LayerState
from star.nn.factory import Factory
from star.nn.ffn import MLP, SwiGLU
from star.nn.linear_attention import LinearAttention
from star.nn.moe import MoE
from star.nn.norm import make_norm
from star.nn.shortconv import ShortConv
from star.nn.ssm import SSM

Mixer = Attention | ShortConv | LinearAttention | SSM
Channel = SwiGLU | MLP | MoE
MixerFactory = Callable[[TokenMixerSpec, ArchSpec, Factory], Mixer]
ChannelFactory = Callable[[ChannelMixerSpec, ArchSpec, Factory], Channel]


def _attention(op: TokenMixerSpec, arch: ArchSpec, factory: Factory) -> Mixer:
    assert isinstance(op, AttentionSpec)
    return Attention(
        op,
        arch.d_model,
        rope_theta=arch.rope_theta,
        norm_eps=arch.norm_eps,
        **factory,
    )


def _shortconv(op: TokenMixerSpec, arch: ArchSpec, factory: Factory) -> Mixer:
    assert isinstance(op, ShortConvSpec)
    return ShortConv(op, arch.d_model, **factory)


def _linear_attention(op: TokenMixerSpec, arch: ArchSpec, factory: Factory) -> Mixer:
    assert isinstance(op, LinearAttentionSpec)
    return LinearAttention(op, arch.d_model, **factory)


def _ssm(op: TokenMixerSpec, arch: ArchSpec, factory: Factory) -> Mixer:
    assert isinstance(op, SSMSpec)
    return SSM(op, arch.d_model, norm_eps=arch.norm_eps, **factory)


def _swiglu(op: ChannelMixerSpec, arch: ArchSpec, factory: Factory) -> Channel:
    assert isinstance(op, FFNSpec)
    return SwiGLU(op, arch.d_model, **factory)


def _mlp(op: ChannelMixerSpec, arch: ArchSpec, factory: Factory) -> Channel:
    assert isinstance(op, FFNSpec)
    return MLP(op, arch.d_model, **factory)


def _moe(op: ChannelMixerSpec, arch: ArchSpec, factory: Factory) -> Channel:
    assert isinstance(op, MoESpec)
    return MoE(op, arch.d_model, **factory)


MIXERS: dict[TokenMixer, MixerFactory] = {
    TokenMixer.ATTENTION: _attention,
    TokenMixer.SWA: _attention,
    TokenMixer.SHORTCONV: _shortconv,
    TokenMixer.LINEAR_ATTENTION: _linear_attention,
    TokenMixer.SSM: _ssm,
}

CHANNELS: dict[ChannelMixer, ChannelFactory] = {
    ChannelMixer.SWIGLU: _swiglu,
    ChannelMixer.MLP: _mlp,
    ChannelMixer.MOE: _moe,
}


class Block(nn.Module):
    """Layer ``index`` of ``spec``; ``shared_mixer`` is the weight owner's mixer, reused as is."""

    def __init__(
        self,
        spec: ArchSpec,
        index: int,
        shared_mixer: Mixer | None = None,
        **factory: Unpack[Factory],
    ) -> None:
        super().__init__()
        layer = spec.layers[index]
        self.index = index
        self.mixer_norm = make_norm(layer.norm, spec.d_model, spec.norm_eps, **factory)
        if shared_mixer is not None:
            if shared_mixer.spec != layer.mixer:
                raise ValueError(
                    f"layer {index} shares weights with a {shared_mixer.spec} mixer but is "
                    f"{layer.mixer}"
                )
            self.mixer: Mixer = shared_mixer
        else:
            self.mixer = MIXERS[layer.mixer.kind](layer.mixer, spec, factory)
        self.ffn: Channel | None = None
        channel = layer.channel
        if channel is not None and channel.kind != ChannelMixer.NONE:
            self.ffn_norm = make_norm(layer.norm, spec.d_model, spec.norm_eps, **factory)
            self.ffn = CHANNELS[channel.kind](channel, spec, factory)

    def new_state(self, batch_size: int) -> LayerState:
        return self.mixer.new_state(batch_size)

    def forward(
        self, x: torch.Tensor, *, pos: int, state: LayerState | None = None
    ) -> torch.Tensor:
        """x (B, T, d) at positions pos.. -> (B, T, d); ``state`` is updated in place."""
        h = x + self.mixer(self.mixer_norm(x), pos=pos, state=state)
        if self.ffn is not None:
            h = h + self.ffn(self.ffn_norm(h))
        return h

"""One layer: ``h = x + mixer(mixer_norm(x))``, then ``h + ffn(ffn_norm(h))`` if it has an FFN.

The operator classes come from two small tables keyed by the spec's enums, so adding an operator
is one class plus one table row.
"""

from __future__ import annotations

from collections.abc import Callable

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
from star.nn.ffn import MLP, SwiGLU
from star.nn.linear_attention import LinearAttention
from star.nn.moe import MoE
from star.nn.norm import make_norm
from star.nn.shortconv import ShortConv
from star.nn.ssm import SSM

Mixer = Attention | ShortConv | LinearAttention | SSM
Channel = SwiGLU | MLP | MoE
Device = torch.device | str | None
MixerFactory = Callable[[TokenMixerSpec, ArchSpec, Device, torch.dtype | None], Mixer]
ChannelFactory = Callable[[ChannelMixerSpec, ArchSpec, Device, torch.dtype | None], Channel]


def _attention(
    op: TokenMixerSpec, arch: ArchSpec, device: Device, dtype: torch.dtype | None
) -> Mixer:
    assert isinstance(op, AttentionSpec)
    return Attention(
        op,
        arch.d_model,
        rope_theta=arch.rope_theta,
        norm_eps=arch.norm_eps,
        device=device,
        dtype=dtype,
    )


def _shortconv(
    op: TokenMixerSpec, arch: ArchSpec, device: Device, dtype: torch.dtype | None
) -> Mixer:
    assert isinstance(op, ShortConvSpec)
    return ShortConv(op, arch.d_model, device=device, dtype=dtype)


def _linear_attention(
    op: TokenMixerSpec, arch: ArchSpec, device: Device, dtype: torch.dtype | None
) -> Mixer:
    assert isinstance(op, LinearAttentionSpec)
    return LinearAttention(op, arch.d_model, device=device, dtype=dtype)


def _ssm(op: TokenMixerSpec, arch: ArchSpec, device: Device, dtype: torch.dtype | None) -> Mixer:
    assert isinstance(op, SSMSpec)
    return SSM(op, arch.d_model, norm_eps=arch.norm_eps, device=device, dtype=dtype)


def _swiglu(
    op: ChannelMixerSpec, arch: ArchSpec, device: Device, dtype: torch.dtype | None
) -> Channel:
    assert isinstance(op, FFNSpec)
    return SwiGLU(op, arch.d_model, device=device, dtype=dtype)


def _mlp(
    op: ChannelMixerSpec, arch: ArchSpec, device: Device, dtype: torch.dtype | None
) -> Channel:
    assert isinstance(op, FFNSpec)
    return MLP(op, arch.d_model, device=device, dtype=dtype)


def _moe(
    op: ChannelMixerSpec, arch: ArchSpec, device: Device, dtype: torch.dtype | None
) -> Channel:
    assert isinstance(op, MoESpec)
    return MoE(op, arch.d_model, device=device, dtype=dtype)


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
        *,
        device: Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        layer = spec.layers[index]
        self.index = index
        self.mixer_norm = make_norm(
            layer.norm, spec.d_model, spec.norm_eps, device=device, dtype=dtype
        )
        if shared_mixer is not None:
            if shared_mixer.spec != layer.mixer:
                raise ValueError(
                    f"layer {index} shares weights with a {shared_mixer.spec} mixer but is "
                    f"{layer.mixer}"
                )
            self.mixer: Mixer = shared_mixer
        else:
            self.mixer = MIXERS[layer.mixer.kind](layer.mixer, spec, device, dtype)
        self.ffn: Channel | None = None
        channel = layer.channel
        if channel is not None and channel.kind != ChannelMixer.NONE:
            self.ffn_norm = make_norm(
                layer.norm, spec.d_model, spec.norm_eps, device=device, dtype=dtype
            )
            self.ffn = CHANNELS[channel.kind](channel, spec, device, dtype)

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

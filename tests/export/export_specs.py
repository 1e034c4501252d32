"""Small ArchSpecs, one per export target, and a randomiser that makes the equivalence tests sharp.

Widths are multiples of 32 so every matrix can be Q8_0/Q4_0 (ne0 % 32 == 0). The default
``init_weights`` (std 0.02, unit norms, zero biases) gives near-flat logits in which a wrong RoPE
style or a swapped gate barely shows; ``randomize`` draws every parameter with O(1) effect.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    ChannelMixer,
    ChannelMixerSpec,
    FFNSpec,
    LayerSpec,
    MoESpec,
    Norm,
    Routing,
    ShortConvSpec,
    SSMSpec,
    TokenMixer,
    TokenMixerSpec,
)
from star.nn import StarModel

D = 64
VOCAB = 384  # >= 259: the SentencePiece tokenizer form


def attn(
    *, heads: int = 4, kv: int = 2, hd: int = 16, qk_norm: bool = True, window: int = 0
) -> AttentionSpec:
    kind = TokenMixer.SWA if window else TokenMixer.ATTENTION
    return AttentionSpec(heads, kv, hd, qk_norm=qk_norm, window=window, kind=kind)


def conv(kernel: int = 3) -> ShortConvSpec:
    return ShortConvSpec(kernel=kernel)


def ssm(
    *, heads: int = 8, hd: int = 16, state: int = 16, groups: int = 2, kernel: int = 4
) -> SSMSpec:
    return SSMSpec(n_heads=heads, head_dim=hd, state=state, n_groups=groups, conv_kernel=kernel)


def swiglu(ff: int = 128) -> FFNSpec:
    return FFNSpec(ffn_dim=ff)


def mlp(ff: int = 128) -> FFNSpec:
    return FFNSpec(ffn_dim=ff, kind=ChannelMixer.MLP)


def moe(
    *,
    experts: int = 8,
    top_k: int = 2,
    ff: int = 64,
    routing: Routing = Routing.SIGMOID,
    bias: bool = True,
) -> MoESpec:
    return MoESpec(n_experts=experts, top_k=top_k, expert_dim=ff, routing=routing, expert_bias=bias)


def arch(
    layers: list[tuple[TokenMixerSpec, ChannelMixerSpec | None]],
    *,
    name: str = "tiny",
    tie: bool = True,
    share: dict[int, tuple[int, int]] | None = None,
    norm: Norm = Norm.RMSNORM,
    d_model: int = D,
    vocab: int = VOCAB,
) -> ArchSpec:
    """``share`` maps layer index -> (operator, share group); others get operator = index.

    RoPE theta 1e6 (LFM2's), not llama.cpp's 1e4 default: a lost rope key would show.
    """
    share = share or {}
    return ArchSpec(
        name=name, d_model=d_model, vocab_size=vocab, tie_embeddings=tie, rope_theta=1e6,
        norm_eps=1e-5, context_length=512,
        layers=tuple(
            LayerSpec(index=i, operator=share.get(i, (i, 0))[0], mixer=m, channel=c, norm=norm,
                      share_group=share.get(i, (i, 0))[1])
            for i, (m, c) in enumerate(layers)
        ),
    )  # fmt: skip


# One spec per target, each exercising what that target allows beyond the obvious.
SPECS: dict[str, ArchSpec] = {
    # tied head; per-layer KV heads; layers 0 and 3 share their conv weights
    "lfm2": arch(
        [
            (conv(), swiglu()),
            (attn(kv=2), swiglu()),
            (conv(), swiglu()),
            (conv(), swiglu()),
            (attn(kv=4), swiglu()),
            (conv(), swiglu()),
        ],
        name="lfm2-tiny",
        share={0: (0, 1), 3: (0, 1)},
    ),
    # all attention layers sliding-window (window 8 < sequence length)
    "lfm2-swa": arch(
        [
            (conv(), swiglu()),
            (attn(window=8), swiglu()),
            (conv(), swiglu()),
            (attn(window=8), swiglu()),
        ],
        name="lfm2-swa-tiny",
    ),
    # one leading dense layer, then sigmoid MoE with a selection bias; untied head
    "lfm2moe": arch(
        [(conv(), swiglu()), (attn(), moe()), (conv(), moe()), (conv(), moe()), (attn(), moe())],
        name="lfm2moe-tiny",
        tie=False,
    ),
    # no dense layer, no selection bias (the file gets a zero exp_probs_b)
    "lfm2moe-nobias": arch(
        [
            (attn(), moe(bias=False, top_k=3)),
            (conv(), moe(bias=False, top_k=3)),
            (conv(), moe(bias=False, top_k=3)),
        ],
        name="lfm2moe-nobias-tiny",
    ),
    # head_dim 32 with 4 heads: q width 128 != d_model (key_length written); untied head
    "qwen3": arch([(attn(hd=32), swiglu(160))] * 4, name="qwen3-tiny", tie=False),
    # no QK-norm: interleaved-RoPE llama with permuted q/k rows; MQA
    "llama": arch([(attn(kv=1, qk_norm=False), swiglu())] * 4, name="llama-tiny"),
    "mamba2": arch([(ssm(), None)] * 4, name="mamba2-tiny", tie=False),
    # Mamba-2 (d_inner = 2 d) + attention without QK-norm, per-layer KV heads
    "granitehybrid": arch(
        [
            (ssm(groups=1), swiglu()),
            (ssm(groups=1), swiglu()),
            (attn(kv=2, qk_norm=False), swiglu()),
            (ssm(groups=1), swiglu()),
            (attn(kv=1, qk_norm=False), swiglu()),
        ],
        name="granitehybrid-tiny",
    ),
    # Mamba-2 with and without squared-ReLU MLPs of different widths (6 GGUF blocks)
    "nemotron_h": arch(
        [(ssm(), mlp(128)), (ssm(), None), (ssm(), mlp(96)), (ssm(), mlp(128))],
        name="nemotron_h-tiny",
        tie=False,
    ),
}
TARGET_OF = {key: key.split("-")[0] for key in SPECS}


@torch.no_grad()
def randomize(model: StarModel, seed: int = 0) -> StarModel:
    """Redraw every parameter so that each one visibly moves the logits (see module doc)."""
    gen = torch.Generator().manual_seed(seed)

    def normal(shape: torch.Size, std: float, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * std + mean

    seen: set[int] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        leaf = name.rsplit(".", 1)[-1]
        if "norm" in name and leaf == "weight":
            p.copy_(normal(p.shape, 0.2, 1.0))
        elif leaf == "expert_bias":
            p.copy_(normal(p.shape, 0.05))
        elif leaf == "bias":
            p.copy_(normal(p.shape, 0.2))
        elif leaf in ("dt_bias", "A_log"):
            continue  # keep the Mamba-2 init: dt in [1e-3, 0.1], A in [-16, -1]
        elif leaf == "D":
            p.copy_(normal(p.shape, 0.5, 1.0))
        elif name.endswith("conv.weight") or name.endswith("conv1d.weight"):
            p.copy_(normal(p.shape, 0.5))
        elif name == "embed.weight" or name == "lm_head.weight":
            p.copy_(normal(p.shape, 1.0))
        else:  # projections and expert stacks: fan-in scaling keeps activations O(1)
            p.copy_(normal(p.shape, 1.0 / math.sqrt(p.shape[-1])))
    return model


def build_model(spec: ArchSpec, seed: int = 0) -> StarModel:
    return randomize(StarModel(spec, device="cpu", dtype=torch.float32, seed=seed), seed)


def tokens(n: int, vocab: int = VOCAB, seed: int = 0) -> list[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, n)]


@torch.no_grad()
def torch_logits(model: StarModel, toks: list[int]) -> np.ndarray:
    return model(torch.tensor([toks]))[0].float().numpy()  # (T, V)

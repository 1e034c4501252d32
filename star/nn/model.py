"""``StarModel``: the torch model of an ``ArchSpec`` (training, proxy evaluation, export source).

Layout: ``embed`` -> ``layers`` (each ``h = x + mixer(mixer_norm(x))``, then
``h + ffn(ffn_norm(h))`` when the layer has a channel mixer) -> ``final_norm`` -> output head
(``embed.weight`` when ``spec.tie_embeddings``, else ``lm_head``). The final norm uses the last
layer's norm kind (``ArchSpec`` has no separate field for it).

Parameter names -- a CONTRACT with the GGUF exporter (``star.export``), which maps them one-to-one
onto GGUF tensors. Do not rename without changing the exporter's table::

    embed.weight                                (V, d)
    final_norm.weight [, final_norm.bias]       (d,)
    lm_head.weight                              (V, d)   only when not tied
    layers.{i}.mixer_norm.weight [, .bias]      (d,)
    layers.{i}.ffn_norm.weight [, .bias]        (d,)     only when the layer has a channel mixer
    # attention / swa
    layers.{i}.mixer.q_proj.weight (H*hd, d); k_proj.weight (KV*hd, d); v_proj.weight (KV*hd, d);
        o_proj.weight (d, H*hd)
    layers.{i}.mixer.q_norm.weight (hd,); k_norm.weight (hd,)        only with qk_norm
    # shortconv
    layers.{i}.mixer.in_proj.weight (3d, d); conv.weight (d, 1, L); out_proj.weight (d, d)
    # linear attention
    layers.{i}.mixer.q_proj / k_proj / v_proj.weight (H*hd, d); o_proj.weight (d, H*hd)
    # ssm
    layers.{i}.mixer.in_proj.weight (in_proj_dim, d); conv1d.weight (conv_dim, 1, K);
        conv1d.bias (conv_dim,);
    layers.{i}.mixer.dt_bias (H,); A_log (H,); D (H,); norm.weight (d_inner,);
        out_proj.weight (d, d_inner)
    # swiglu
    layers.{i}.ffn.gate.weight (ff, d)  [w1]; up.weight (ff, d) [w3]; down.weight (d, ff) [w2]
    # mlp
    layers.{i}.ffn.up.weight (ff, d); down.weight (d, ff)
    # moe
    layers.{i}.ffn.router.weight (E, d); ffn.expert_bias (E,) only if spec.expert_bias;
    layers.{i}.ffn.gate_exps (E, ff_e, d); up_exps (E, ff_e, d); down_exps (E, d, ff_e)

Weight sharing: a layer with ``spec.weight_owner(i) != i`` holds the owner's mixer module object,
so ``parameters()`` counts it once while ``state_dict()`` lists it under both layer names (the
exporter writes it for every layer). Norms and FFNs are never shared.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from star.genome.spec import ArchSpec, Norm
from star.nn.block import Block
from star.nn.cache import ModelCache
from star.nn.moe import MoE
from star.nn.norm import GroupedRMSNorm, LayerNorm, RMSNorm, make_norm
from star.nn.ssm import SSM

INIT_STD = 0.02
# Mamba-2 defaults: dt log-uniform in [DT_MIN, DT_MAX], A uniform in [A_MIN, A_MAX].
DT_MIN, DT_MAX, DT_FLOOR = 1e-3, 1e-1, 1e-4
A_MIN, A_MAX = 1.0, 16.0


class StarModel(nn.Module):
    """Causal LM for ``spec``. Constructs on ``device="meta"`` without allocating."""

    def __init__(
        self,
        spec: ArchSpec,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.spec = spec
        meta = torch.device("meta")
        # Build on meta, then materialise once: no wasted default initialisation of big matrices.
        self.embed = nn.Embedding(spec.vocab_size, spec.d_model, device=meta, dtype=dtype)
        blocks: list[Block] = []
        for i in range(spec.n_layers):
            owner = spec.weight_owner(i)
            shared = blocks[owner].mixer if owner != i else None
            blocks.append(Block(spec, i, shared, device=meta, dtype=dtype))
        self.layers = nn.ModuleList(blocks)
        last_norm = spec.layers[-1].norm if spec.layers else Norm.RMSNORM
        self.final_norm = make_norm(
            last_norm, spec.d_model, spec.norm_eps, device=meta, dtype=dtype
        )
        if not spec.tie_embeddings:
            self.lm_head = nn.Linear(
                spec.d_model, spec.vocab_size, bias=False, device=meta, dtype=dtype
            )
        target = torch.device(device) if device is not None else torch.empty(0).device
        if target.type != "meta":
            self.to_empty(device=target)
            self.init_weights(seed)

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """Deterministic init from ``seed`` (drawn on CPU, so identical on every device).

        Matrices and the short-conv kernel N(0, 0.02) as HF LFM2 does; norms 1 (bias 0). Mamba-2
        as in its reference: conv1d weight and bias U(+-1/sqrt(K)), ``dt_bias`` = softplus^-1 of
        a log-uniform dt in [1e-3, 0.1], ``A_log`` = log U(1, 16), ``D`` = 1.
        """
        if self.embed.weight.is_meta:
            return
        gen = torch.Generator().manual_seed(seed)

        def normal(p: torch.Tensor) -> None:
            p.copy_(torch.empty(p.shape).normal_(0.0, INIT_STD, generator=gen))

        def uniform(p: torch.Tensor, low: float, high: float) -> torch.Tensor:
            return torch.rand(p.shape, generator=gen) * (high - low) + low

        for module in self.modules():  # shared modules are visited once
            if isinstance(module, RMSNorm | LayerNorm | GroupedRMSNorm):
                module.reset_parameters()
            elif isinstance(module, nn.Linear | nn.Embedding | nn.Conv1d):
                normal(module.weight)
                bias = getattr(module, "bias", None)
                if isinstance(bias, torch.Tensor):
                    bias.zero_()  # replaced below for the SSM conv
            elif isinstance(module, MoE):
                for p in (module.gate_exps, module.up_exps, module.down_exps):
                    normal(p)
                if module.expert_bias is not None:
                    module.expert_bias.zero_()
        for module in self.modules():
            if isinstance(module, SSM):
                # Mamba's conv init (PyTorch default, U(+-1/sqrt(K))): at N(0, 0.02) the SiLU'd
                # x, B, C would start near zero and the SSM path would barely train.
                bound = 1.0 / math.sqrt(module.spec.conv_kernel)
                module.conv1d.weight.copy_(uniform(module.conv1d.weight, -bound, bound))
                conv_bias = module.conv1d.bias
                assert conv_bias is not None
                conv_bias.copy_(uniform(conv_bias, -bound, bound))
                log_dt = uniform(module.dt_bias, math.log(DT_MIN), math.log(DT_MAX))
                dt = log_dt.exp().clamp_min(DT_FLOOR)
                module.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
                module.A_log.copy_(uniform(module.A_log, A_MIN, A_MAX).log())
                module.D.fill_(1.0)

    @property
    def blocks(self) -> list[Block]:
        """The layers, typed (``self.layers`` is an ``nn.ModuleList`` for the parameter names)."""
        return [cast(Block, block) for block in self.layers]

    def new_cache(self, batch_size: int) -> ModelCache:
        """Empty decode state for ``batch_size`` sequences (one state per layer, position 0)."""
        return ModelCache(layers=[block.new_state(batch_size) for block in self.blocks])

    def forward(self, tokens: torch.Tensor, cache: ModelCache | None = None) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, V).

        With ``cache`` the tokens continue the cached sequence at ``cache.position``; the cache
        is updated in place.
        """
        t = tokens.shape[1]
        pos = cache.position if cache is not None else 0
        x = self.embed(tokens)  # (B, T, d)
        for i, block in enumerate(self.blocks):
            x = block(x, pos=pos, state=cache.layers[i] if cache is not None else None)
        x = self.final_norm(x)
        head = self.embed.weight if self.spec.tie_embeddings else self.lm_head.weight
        if cache is not None:
            cache.position += t
        return F.linear(x, head)  # (B, T, V)

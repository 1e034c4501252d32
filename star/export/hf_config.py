"""config.json and generation_config.json of an HF export, as plain dicts (no transformers import).

Each field that changes the computation is set explicitly rather than left to a class default,
because the defaults are those of released checkpoints, not ours: ``Lfm2Config`` shrinks
``intermediate_size`` to 2/3 unless ``block_auto_adjust_ff_dim`` is False; GraniteMoeHybrid has 8
experts, no RoPE and a 1.0 attention scale unless told otherwise; NemotronH and Mamba2 default to
other SSM shapes, and NemotronH clamps dt from below. The GraniteMoeHybrid multipliers are neutral
(1.0) and its ``attention_multiplier`` is the standard 1/sqrt(head_dim), as ``star.nn`` computes.

Version notes: transformers 5.x reads RoPE theta from ``rope_parameters`` and ignores a top-level
``rope_theta`` when both are present; 4.x reads only ``rope_theta`` (FACTS.md), so both are written
with the same value. Likewise ``dtype`` (5.x) and ``torch_dtype`` (4.x); the Hub's layer-type names
(``mamba`` / ``attention``, nemotron_h's ``hybrid_override_pattern``) which 5.x remaps on load.
"""

from __future__ import annotations

import math
from typing import Any

from star.export.hf_names import HfArch
from star.export.names import NULL_ATTENTION_HEAD_DIM
from star.export.tokenizer import BOS_ID, EOS_ID, UNK_ID
from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    FFNSpec,
    MoESpec,
    ShortConvSpec,
    SSMSpec,
)

TORCH_DTYPE = {"f32": "float32", "f16": "float16"}
PAD_ID = UNK_ID  # the synthetic vocabulary has no pad token; <unk> never occurs in text


def hf_blocks(spec: ArchSpec, arch: HfArch) -> tuple[list[int], list[int | None], int]:
    """HF block of each layer's mixer and of its channel mixer, and the block count.

    One block per layer, except in NemotronH where a block holds ONE operator: a layer with an
    MLP becomes a Mamba-2 block followed by an MLP block, after the no-op attention block 0
    (``hf_names.NULL_ATTENTION``).
    """
    mixer_bid: list[int] = []
    channel_bid: list[int | None] = []
    bid = 1 if arch.null_attention else 0
    for layer in spec.layers:
        mixer_bid.append(bid)
        if arch.family == "nemotron_h" and layer.channel is not None:
            bid += 1
        channel_bid.append(bid if layer.channel is not None else None)
        bid += 1
    return mixer_bid, channel_bid, bid


def _first_attention(spec: ArchSpec) -> AttentionSpec | None:
    for layer in spec.layers:
        if isinstance(layer.mixer, AttentionSpec):
            return layer.mixer
    return None


def _first_ssm(spec: ArchSpec) -> SSMSpec:
    m = next(la.mixer for la in spec.layers if isinstance(la.mixer, SSMSpec))
    assert isinstance(m, SSMSpec)
    return m


def _ffn_width(spec: ArchSpec) -> int | None:
    """The dense FFN width (the checks made it one value), None without dense FFNs."""
    for layer in spec.layers:
        if isinstance(layer.channel, FFNSpec):
            return layer.channel.ffn_dim
    return None


def hf_kv_heads(spec: ArchSpec) -> int:
    """The one KV head count of the config: the lcm of the layers' (which divides n_heads).

    transformers configs hold one ``num_key_value_heads``; a layer with fewer KV heads gets each
    K/V head repeated (``hf_names`` "repeat_kv"): query head h reads KV head h // (H / kv) in
    both, so the logits are unchanged; only that layer's HF KV cache is larger.
    """
    counts = [la.mixer.n_kv_heads for la in spec.layers if isinstance(la.mixer, AttentionSpec)]
    return math.lcm(*counts) if counts else 1


def _rope(spec: ArchSpec) -> dict[str, Any]:
    return {
        "rope_theta": spec.rope_theta,  # transformers 4.x
        "rope_parameters": {"rope_type": "default", "rope_theta": spec.rope_theta},  # 5.x
    }


def _attention_fields(spec: ArchSpec) -> dict[str, Any]:
    """Head counts; an attention-free stack gets one head of width d_model (never built)."""
    a = _first_attention(spec)
    heads, hd = (a.n_heads, a.head_dim) if a else (1, spec.d_model)
    return {"num_attention_heads": heads, "num_key_value_heads": hf_kv_heads(spec), "head_dim": hd}


def _lfm2(spec: ArchSpec, arch: HfArch) -> dict[str, Any]:
    attn = _attention_fields(spec)
    del attn["head_dim"]  # Lfm2 derives it as hidden_size / heads (the checks require that)
    conv = next((la.mixer for la in spec.layers if isinstance(la.mixer, ShortConvSpec)), None)
    kinds = ["full_attention" if la.mixer.kind.is_attention else "conv" for la in spec.layers]
    out: dict[str, Any] = {
        **attn,
        "norm_eps": spec.norm_eps,
        "conv_bias": False,
        "conv_L_cache": conv.kernel if conv is not None else 3,
        "layer_types": kinds,
        "full_attn_idxs": [i for i, k in enumerate(kinds) if k == "full_attention"],
        **_rope(spec),
    }
    dense = _ffn_width(spec)
    if arch.family == "lfm2":
        out.update(intermediate_size=dense, block_auto_adjust_ff_dim=False)
        return out
    moe = next(la.channel for la in spec.layers if isinstance(la.channel, MoESpec))
    assert isinstance(moe, MoESpec)
    n_dense = next(i for i, la in enumerate(spec.layers) if isinstance(la.channel, MoESpec))
    out.update(
        intermediate_size=dense if dense is not None else moe.expert_dim,
        moe_intermediate_size=moe.expert_dim,
        num_experts=moe.n_experts,
        num_experts_per_tok=moe.top_k,
        num_dense_layers=n_dense,
        use_expert_bias=moe.expert_bias,
        norm_topk_prob=True,
        routed_scaling_factor=1.0,
    )
    return out


def _transformer(spec: ArchSpec) -> dict[str, Any]:
    """What Qwen3 and Llama configs share: an attention-only stack of SwiGLU layers."""
    return {
        **_attention_fields(spec),
        "intermediate_size": _ffn_width(spec),
        "hidden_act": "silu",
        "rms_norm_eps": spec.norm_eps,
        "attention_bias": False,
    }


def _qwen3(spec: ArchSpec, arch: HfArch) -> dict[str, Any]:
    return {
        **_transformer(spec),
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": spec.n_layers,
        "layer_types": ["full_attention"] * spec.n_layers,
        **_rope(spec),
    }


def _llama(spec: ArchSpec, arch: HfArch) -> dict[str, Any]:
    return {
        **_transformer(spec),
        "mlp_bias": False,
        "pretraining_tp": 1,
        **_rope(spec),
    }


def _mamba2(spec: ArchSpec, arch: HfArch) -> dict[str, Any]:
    m = _first_ssm(spec)
    return {
        "num_heads": m.n_heads,
        "head_dim": m.head_dim,
        "state_size": m.state,
        "n_groups": m.n_groups,
        "conv_kernel": m.conv_kernel,
        "expand": m.d_inner // spec.d_model,
        "use_bias": False,
        "use_conv_bias": True,
        "hidden_act": "silu",
        "layer_norm_epsilon": spec.norm_eps,
        "residual_in_fp32": True,
    }


def _granitehybrid(spec: ArchSpec, arch: HfArch) -> dict[str, Any]:
    m = _first_ssm(spec)
    attn = _attention_fields(spec)
    ff = _ffn_width(spec)
    return {
        **attn,
        "intermediate_size": ff,
        "shared_intermediate_size": ff,  # the dense SwiGLU is GraniteMoeHybrid's "shared MLP"
        "num_local_experts": 0,
        "num_experts_per_tok": 0,
        "hidden_act": "silu",
        "rms_norm_eps": spec.norm_eps,
        "attention_bias": False,
        "embedding_multiplier": 1.0,
        "residual_multiplier": 1.0,
        "logits_scaling": 1.0,
        "attention_multiplier": attn["head_dim"] ** -0.5,
        "position_embedding_type": "rope",
        "layer_types": ["attention" if la.mixer.kind.is_attention else "mamba"
                        for la in spec.layers],
        "mamba_n_heads": m.n_heads,
        "mamba_d_head": m.head_dim,
        "mamba_d_state": m.state,
        "mamba_n_groups": m.n_groups,
        "mamba_d_conv": m.conv_kernel,
        "mamba_expand": m.d_inner // spec.d_model,
        "mamba_conv_bias": True,
        "mamba_proj_bias": False,
        **_rope(spec),
    }  # fmt: skip


def _nemotron_h(spec: ArchSpec, arch: HfArch) -> dict[str, Any]:
    m = _first_ssm(spec)
    mlp = _ffn_width(spec)
    pattern = "*" + "".join("M-" if la.channel is not None else "M" for la in spec.layers)
    return {
        # "*" the no-op attention block, "M" a Mamba-2 block, "-" an MLP block
        "hybrid_override_pattern": pattern,
        "num_hidden_layers": len(pattern),
        "num_attention_heads": 1,
        "num_key_value_heads": 1,
        "head_dim": NULL_ATTENTION_HEAD_DIM,
        "mamba_num_heads": m.n_heads,
        "mamba_head_dim": m.head_dim,
        "ssm_state_size": m.state,
        "n_groups": m.n_groups,
        "conv_kernel": m.conv_kernel,
        "expand": max(1, m.d_inner // spec.d_model),  # unused: d_inner = heads * head_dim
        "use_conv_bias": True,
        "mamba_proj_bias": False,
        "use_bias": False,
        "mamba_hidden_act": "silu",
        # NemotronH clamps dt to >= time_step_min (default 1e-3; star.nn and llama.cpp never
        # clamp): 0 makes the clamp a no-op, dt = softplus(.) being positive anyway
        "time_step_min": 0.0,
        "intermediate_size": mlp if mlp is not None else 4 * spec.d_model,
        "mlp_hidden_act": "relu2",
        "mlp_bias": False,
        "layer_norm_epsilon": spec.norm_eps,
        "residual_in_fp32": False,
    }


_FAMILY_FIELDS = {
    "lfm2": _lfm2,
    "lfm2moe": _lfm2,
    "qwen3": _qwen3,
    "llama": _llama,
    "mamba2": _mamba2,
    "granitehybrid": _granitehybrid,
    "nemotron_h": _nemotron_h,
}


def hf_config(spec: ArchSpec, arch: HfArch, *, dtype: str) -> dict[str, Any]:
    """config.json for ``spec`` exported as ``arch`` with weights stored as ``dtype``."""
    _, _, n_blocks = hf_blocks(spec, arch)
    config: dict[str, Any] = {
        "architectures": [arch.architecture],
        "model_type": arch.model_type,
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.d_model,
        "num_hidden_layers": n_blocks,
        "max_position_embeddings": spec.context_length,
        "tie_word_embeddings": spec.tie_embeddings and arch.ties_head,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        "use_cache": True,
        "dtype": TORCH_DTYPE[dtype],
        "torch_dtype": TORCH_DTYPE[dtype],
    }
    config.update(_FAMILY_FIELDS[arch.family](spec, arch))
    return config


def generation_config() -> dict[str, Any]:
    """Greedy decoding with the synthetic vocabulary's special ids."""
    return {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID,
            "do_sample": False}  # fmt: skip

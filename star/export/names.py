"""GGUF names as data: which GGUF tensor each of our parameters becomes, per target, and which
metadata keys each target gets.

Templates come from gguf-py's own tables (``gguf.TENSOR_NAMES``, ``gguf.Keys``), so a misspelt
name cannot slip in. A rule maps one ``star.nn`` parameter (the contract in ``star/nn/model.py``)
to one GGUF tensor:

- ``source`` is relative to the rule's component: ``""`` for model-level tensors,
  ``layers.{i}.mixer_norm.`` / ``layers.{i}.ffn_norm.`` for norms, ``layers.{owner}.mixer.`` for
  token mixers (``owner`` = ``spec.weight_owner(i)``: shared weights are copied into every layer),
  ``layers.{i}.ffn.`` for channel mixers;
- ``gguf`` is the GGUF name, ``{bid}`` being the GGUF block of the layer's mixer or channel slot
  (the same block except in ``nemotron_h``, where a layer with an MLP becomes two blocks);
- ``transform`` names a function in ``star.export.tensors.TRANSFORMS`` (numpy layout in, numpy
  layout out; GGUF stores numpy shape reversed, so numpy (rows, cols) is ggml {cols, rows}).
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import MODEL_TENSOR as T
from gguf import TENSOR_NAMES, GGUFValueType, Keys


def _tn(tensor: T, suffix: str | None = "weight") -> str:
    base = TENSOR_NAMES[tensor]
    return f"{base}.{suffix}" if suffix else base


@dataclass(frozen=True)
class TensorRule:
    source: str  # our parameter name, relative to the component prefix
    gguf: str  # GGUF tensor name template ({bid} = GGUF block index)
    transform: str = "copy"


# Component -> prefix of its parameters in a StarModel state dict.
COMPONENT_PREFIX: dict[str, str] = {
    "model": "",
    "mixer_norm": "layers.{i}.mixer_norm.",
    "ffn_norm": "layers.{i}.ffn_norm.",
    "attention": "layers.{owner}.mixer.",
    "shortconv": "layers.{owner}.mixer.",
    "ssm": "layers.{owner}.mixer.",
    "swiglu": "layers.{i}.ffn.",
    "mlp": "layers.{i}.ffn.",
    "moe": "layers.{i}.ffn.",
}
# Which GGUF block a component's tensors live in: the layer's mixer block or its channel block.
CHANNEL_COMPONENTS = frozenset({"ffn_norm", "swiglu", "mlp", "moe"})

TOKEN_EMBD = _tn(T.TOKEN_EMBD)
OUTPUT = _tn(T.OUTPUT)

_EMBED = TensorRule("embed.weight", TOKEN_EMBD)
_HEAD = TensorRule("lm_head.weight", OUTPUT)  # only when untied
_MIXER_NORM = (TensorRule("weight", _tn(T.ATTN_NORM)),)
_FFN_NORM = (TensorRule("weight", _tn(T.FFN_NORM)),)
# embedding, final norm (GGUF output_norm in every family but lfm2), untied head
_MODEL = (_EMBED, TensorRule("final_norm.weight", _tn(T.OUTPUT_NORM)), _HEAD)


def _attention(*, permute: bool, qk_norm: bool) -> tuple[TensorRule, ...]:
    rules = [
        TensorRule("q_proj.weight", _tn(T.ATTN_Q), "permute_q" if permute else "copy"),
        TensorRule("k_proj.weight", _tn(T.ATTN_K), "permute_k" if permute else "copy"),
        TensorRule("v_proj.weight", _tn(T.ATTN_V)),
        TensorRule("o_proj.weight", _tn(T.ATTN_OUT)),
    ]
    if qk_norm:
        rules += [
            TensorRule("q_norm.weight", _tn(T.ATTN_Q_NORM)),
            TensorRule("k_norm.weight", _tn(T.ATTN_K_NORM)),
        ]
    return tuple(rules)


_SHORTCONV = (
    TensorRule("in_proj.weight", _tn(T.SHORTCONV_INPROJ)),  # rows: B, C, x (same order)
    TensorRule("conv.weight", _tn(T.SHORTCONV_CONV), "squeeze_conv"),  # (d,1,L) -> (d,L)
    TensorRule("out_proj.weight", _tn(T.SHORTCONV_OUTPROJ)),
)
_SSM = (
    TensorRule("in_proj.weight", _tn(T.SSM_IN)),  # rows: z, xBC, dt (same order)
    TensorRule("conv1d.weight", _tn(T.SSM_CONV1D), "squeeze_conv"),
    TensorRule("conv1d.bias", _tn(T.SSM_CONV1D, "bias")),
    TensorRule("dt_bias", _tn(T.SSM_DT, "bias")),
    TensorRule("A_log", _tn(T.SSM_A, None), "neg_exp_column"),  # ssm_a stores A = -exp(A_log)
    TensorRule("D", _tn(T.SSM_D, None), "column"),
    TensorRule("norm.weight", _tn(T.SSM_NORM), "group_rows"),  # (d_inner,) -> (G, d_inner/G)
    TensorRule("out_proj.weight", _tn(T.SSM_OUT)),
)
_SWIGLU = (
    TensorRule("gate.weight", _tn(T.FFN_GATE)),  # w1
    TensorRule("up.weight", _tn(T.FFN_UP)),  # w3
    TensorRule("down.weight", _tn(T.FFN_DOWN)),  # w2
)
_MLP = (
    TensorRule("up.weight", _tn(T.FFN_UP)),
    TensorRule("down.weight", _tn(T.FFN_DOWN)),
)
_MOE = (
    TensorRule("router.weight", _tn(T.FFN_GATE_INP)),
    TensorRule("expert_bias", _tn(T.FFN_EXP_PROBS_B, "bias"), "expert_bias_or_zeros"),
    TensorRule("gate_exps", _tn(T.FFN_GATE_EXP)),  # (E, ff, d) = ggml {d, ff, E}
    TensorRule("up_exps", _tn(T.FFN_UP_EXP)),
    TensorRule("down_exps", _tn(T.FFN_DOWN_EXP)),  # (E, d, ff) = ggml {ff, d, E}
)

# Target -> component -> rules. A component absent from a target's table is not exportable there.
TENSOR_TABLE: dict[str, dict[str, tuple[TensorRule, ...]]] = {
    "lfm2": {
        # the FINAL norm: lfm2 calls it token_embd_norm although it runs after the last layer
        "model": (_EMBED, TensorRule("final_norm.weight", _tn(T.TOKEN_EMBD_NORM)), _HEAD),
        "mixer_norm": _MIXER_NORM,
        "ffn_norm": _FFN_NORM,
        "attention": _attention(permute=False, qk_norm=True),
        "shortconv": _SHORTCONV,
        "swiglu": _SWIGLU,
    },
    "qwen3": {
        "model": _MODEL,
        "mixer_norm": _MIXER_NORM,
        "ffn_norm": _FFN_NORM,
        "attention": _attention(permute=False, qk_norm=True),
        "swiglu": _SWIGLU,
    },
    "llama": {
        "model": _MODEL,
        "mixer_norm": _MIXER_NORM,
        "ffn_norm": _FFN_NORM,
        "attention": _attention(permute=True, qk_norm=False),  # llama RoPE is interleaved
        "swiglu": _SWIGLU,
    },
    "mamba2": {
        "model": _MODEL,
        "mixer_norm": _MIXER_NORM,
        "ssm": _SSM,
    },
    "granitehybrid": {
        "model": _MODEL,
        "mixer_norm": _MIXER_NORM,
        "ffn_norm": _FFN_NORM,
        "attention": _attention(permute=True, qk_norm=False),  # granite RoPE is interleaved
        "ssm": _SSM,
        "swiglu": _SWIGLU,
    },
    "nemotron_h": {
        "model": _MODEL,
        "mixer_norm": _MIXER_NORM,
        # an MLP is a block of its own in nemotron_h; its pre-norm is that block's attn_norm
        "ffn_norm": (TensorRule("weight", _tn(T.ATTN_NORM)),),
        "ssm": _SSM,
        "mlp": _MLP,
        # block 0: an attention block whose output projection is zero, i.e. an exact no-op
        # (``h = x + 0``). llama.cpp's hybrid memory gives nemotron_h a KV cache only for its
        # attention blocks and aborts (GGML_ASSERT(buffer)) when there are none; ours never run
        # attention here (nemotron_h attention has no RoPE), so the file carries this one.
        "null_attention": (
            TensorRule("", _tn(T.ATTN_NORM), "ones_d_model"),
            TensorRule("", _tn(T.ATTN_Q), "zeros_null_qkv"),
            TensorRule("", _tn(T.ATTN_K), "zeros_null_qkv"),
            TensorRule("", _tn(T.ATTN_V), "zeros_null_qkv"),
            TensorRule("", _tn(T.ATTN_OUT), "zeros_null_out"),
        ),
    },
}
NULL_ATTENTION_HEAD_DIM = 32  # one head; 32 keeps the KV rows valid for Q8_0/Q4_0 KV caches
TENSOR_TABLE["lfm2moe"] = {**TENSOR_TABLE["lfm2"], "moe": _MOE}


# Metadata keys ({arch} filled in) and the GGUF value type each must have. llama.cpp's loader
# checks types: a float where it expects uint32 is a load error.
U32, F32, STR, BOOL, ARR = (
    GGUFValueType.UINT32,
    GGUFValueType.FLOAT32,
    GGUFValueType.STRING,
    GGUFValueType.BOOL,
    GGUFValueType.ARRAY,
)
K_ARCH = Keys.General.ARCHITECTURE
K_NAME = Keys.General.NAME
K_FILE_TYPE = Keys.General.FILE_TYPE
K_QUANT_VERSION = Keys.General.QUANTIZATION_VERSION
K_CONTEXT = Keys.LLM.CONTEXT_LENGTH
K_EMBD = Keys.LLM.EMBEDDING_LENGTH
K_BLOCKS = Keys.LLM.BLOCK_COUNT
K_FF = Keys.LLM.FEED_FORWARD_LENGTH
K_VOCAB = Keys.LLM.VOCAB_SIZE
K_HEADS = Keys.Attention.HEAD_COUNT
K_HEADS_KV = Keys.Attention.HEAD_COUNT_KV
K_KEY_LEN = Keys.Attention.KEY_LENGTH
K_VALUE_LEN = Keys.Attention.VALUE_LENGTH
K_RMS_EPS = Keys.Attention.LAYERNORM_RMS_EPS
K_LN_EPS = Keys.Attention.LAYERNORM_EPS
K_SWA = Keys.Attention.SLIDING_WINDOW
K_ROPE_BASE = Keys.Rope.FREQ_BASE
K_ROPE_DIMS = Keys.Rope.DIMENSION_COUNT
K_L_CACHE = Keys.ShortConv.L_CACHE
K_SSM_CONV = Keys.SSM.CONV_KERNEL
K_SSM_INNER = Keys.SSM.INNER_SIZE
K_SSM_STATE = Keys.SSM.STATE_SIZE
K_SSM_HEADS = Keys.SSM.TIME_STEP_RANK  # llama.cpp reads the number of SSM heads from here
K_SSM_GROUPS = Keys.SSM.GROUP_COUNT
K_EXPERTS = Keys.LLM.EXPERT_COUNT
K_EXPERTS_USED = Keys.LLM.EXPERT_USED_COUNT
K_EXPERT_FF = Keys.LLM.EXPERT_FEED_FORWARD_LENGTH
K_DENSE_LEAD = Keys.LLM.LEADING_DENSE_BLOCK_COUNT
K_GATING = Keys.LLM.EXPERT_GATING_FUNC

KEY_TYPES: dict[str, GGUFValueType] = {
    K_ARCH: STR, K_NAME: STR, K_FILE_TYPE: U32, K_QUANT_VERSION: U32,
    K_CONTEXT: U32, K_EMBD: U32, K_BLOCKS: U32, K_FF: U32, K_VOCAB: U32,
    K_HEADS: U32, K_HEADS_KV: U32, K_KEY_LEN: U32, K_VALUE_LEN: U32,
    K_RMS_EPS: F32, K_LN_EPS: F32, K_SWA: U32, K_ROPE_BASE: F32, K_ROPE_DIMS: U32,
    K_L_CACHE: U32, K_SSM_CONV: U32, K_SSM_INNER: U32, K_SSM_STATE: U32, K_SSM_HEADS: U32,
    K_SSM_GROUPS: U32, K_EXPERTS: U32, K_EXPERTS_USED: U32, K_EXPERT_FF: U32,
    K_DENSE_LEAD: U32, K_GATING: U32,
}  # fmt: skip
# Keys that may be written as a per-layer array (element type uint32/int32) instead of a scalar.
ARRAY_KEYS = frozenset({K_FF, K_HEADS, K_HEADS_KV})

_COMMON = (K_ARCH, K_NAME, K_FILE_TYPE, K_CONTEXT, K_EMBD, K_BLOCKS, K_VOCAB, K_RMS_EPS)
_ATTN = (K_HEADS, K_HEADS_KV, K_KEY_LEN, K_VALUE_LEN, K_ROPE_BASE, K_ROPE_DIMS)
_SSM_KEYS = (K_SSM_CONV, K_SSM_INNER, K_SSM_STATE, K_SSM_HEADS, K_SSM_GROUPS)
# Required metadata keys per target (optional ones, such as the sliding window, are listed in
# OPTIONAL_KEYS). The validator rejects a plan that misses one or adds an unknown one.
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "lfm2": _COMMON + _ATTN + (K_FF, K_L_CACHE),
    "lfm2moe": _COMMON + _ATTN + (K_FF, K_L_CACHE, K_EXPERTS, K_EXPERTS_USED, K_EXPERT_FF,
                                  K_DENSE_LEAD, K_GATING),
    "qwen3": _COMMON + _ATTN + (K_FF,),
    "llama": _COMMON + _ATTN + (K_FF,),
    "mamba2": _COMMON + _SSM_KEYS + (K_FF, K_HEADS),
    "granitehybrid": _COMMON + _ATTN + _SSM_KEYS + (K_FF,),
    "nemotron_h": _COMMON + _SSM_KEYS + (K_FF, K_HEADS, K_HEADS_KV, K_KEY_LEN, K_VALUE_LEN,
                                         K_LN_EPS),
}  # fmt: skip
OPTIONAL_KEYS: dict[str, tuple[str, ...]] = {"lfm2": (K_SWA,)}
OPTIONAL_KEYS.update({t: OPTIONAL_KEYS.get(t, ()) + (K_QUANT_VERSION,) for t in REQUIRED_KEYS})

# Tokenizer keys (not per-arch).
K_TOK_MODEL = Keys.Tokenizer.MODEL
K_TOK_LIST = Keys.Tokenizer.LIST
K_TOK_TYPES = Keys.Tokenizer.TOKEN_TYPE
K_TOK_SCORES = Keys.Tokenizer.SCORES
K_TOK_BOS = Keys.Tokenizer.BOS_ID
K_TOK_EOS = Keys.Tokenizer.EOS_ID
K_TOK_UNK = Keys.Tokenizer.UNK_ID
K_TOK_PAD = Keys.Tokenizer.PAD_ID
K_TOK_ADD_BOS = Keys.Tokenizer.ADD_BOS
K_TOK_ADD_EOS = Keys.Tokenizer.ADD_EOS

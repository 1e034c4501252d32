"""Hugging Face names as data: which transformers tensor each of our parameters becomes.

The one home of the mapping ``star.nn`` parameter -> HF checkpoint tensor, per transformers
architecture (the exporter, the benchmarks and the HF comparison tests all read it). Names are the
*checkpoint* names that the models on the Hub ship and that ``convert_hf_to_gguf.py`` reads:
``lfm2_moe`` experts one module per expert (``feed_forward.experts.{e}.w1``), ``nemotron_h`` under
``backbone.``. transformers 5.x converts those on load into its fused in-memory layout; 4.x loads
them as they are.

A rule maps our parameter(s) to one HF tensor, like ``star.export.names.TensorRule``:

- ``sources`` are relative to the component prefix of ``names.COMPONENT_PREFIX`` (``""`` for
  model-level tensors, ``layers.{owner}.mixer.`` for token mixers, ...);
- ``hf`` is relative to the architecture's block prefix (``model.layers.{bid}.``) for layer
  components and absolute for the ``model`` component; ``{e}`` is an expert index;
- ``transform`` names what ``star.export.hf`` does to the source(s): ``copy``; ``concat`` of
  several sources along rows; ``per_expert``: one stacked (E, ...) tensor -> E tensors;
  ``repeat_kv``: K/V projection rows repeated per head up to the config's one KV head count
  (``hf_config.hf_kv_heads``), an exact re-indexing when layers have different KV head counts.

transformers computes RoPE rotate-half in every architecture here, as ``star.nn`` does, so unlike
the GGUF table no q/k rows are permuted and the Mamba-2 ``A_log`` is stored as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HfRule:
    sources: tuple[str, ...]  # our parameter name(s), relative to the component prefix
    hf: str  # HF tensor name template ({e} = expert index)
    transform: str = "copy"


def _r(source: str, hf: str, transform: str = "copy") -> HfRule:
    return HfRule((source,), hf, transform)


@dataclass(frozen=True)
class HfArch:
    """One transformers causal-LM class and the names its checkpoints use."""

    family: str  # our name for it (the llama.cpp target name where the family has one)
    architecture: str  # transformers class, config.json "architectures"
    model_type: str  # config.json "model_type"
    block_prefix: str  # prefix of layer ``{bid}``'s tensors
    tensors: dict[str, tuple[HfRule, ...]] = field(default_factory=dict)
    ties_head: bool = True  # False: the class never ties lm_head, so a tied head is written out
    null_attention: bool = False  # block 0 is NULL_ATTENTION (see there)


def _head(embed: str, final_norm: str) -> tuple[HfRule, ...]:
    return (
        _r("embed.weight", embed),
        _r("final_norm.weight", final_norm),
        _r("lm_head.weight", "lm_head.weight"),  # only when untied
    )


# LFM2 (transformers models/lfm2, lfm2_moe)
_LFM2_ATTENTION = (
    _r("q_proj.weight", "self_attn.q_proj.weight"),
    _r("k_proj.weight", "self_attn.k_proj.weight", "repeat_kv"),
    _r("v_proj.weight", "self_attn.v_proj.weight", "repeat_kv"),
    _r("o_proj.weight", "self_attn.out_proj.weight"),
    _r("q_norm.weight", "self_attn.q_layernorm.weight"),
    _r("k_norm.weight", "self_attn.k_layernorm.weight"),
)
_LFM2_SHORTCONV = (
    _r("in_proj.weight", "conv.in_proj.weight"),  # rows B, C, x: the same order
    _r("conv.weight", "conv.conv.weight"),  # (d, 1, L): the same layout
    _r("out_proj.weight", "conv.out_proj.weight"),
)
_LFM2_SWIGLU = (
    _r("gate.weight", "feed_forward.w1.weight"),
    _r("up.weight", "feed_forward.w3.weight"),
    _r("down.weight", "feed_forward.w2.weight"),
)
_LFM2 = {
    "model": _head("model.embed_tokens.weight", "model.embedding_norm.weight"),
    "mixer_norm": (_r("weight", "operator_norm.weight"),),
    "ffn_norm": (_r("weight", "ffn_norm.weight"),),
    "attention": _LFM2_ATTENTION,
    "shortconv": _LFM2_SHORTCONV,
    "swiglu": _LFM2_SWIGLU,
}
_LFM2MOE_MOE = (
    _r("router.weight", "feed_forward.gate.weight"),
    _r("expert_bias", "feed_forward.expert_bias"),  # only with a selection bias
    _r("gate_exps", "feed_forward.experts.{e}.w1.weight", "per_expert"),
    _r("up_exps", "feed_forward.experts.{e}.w3.weight", "per_expert"),
    _r("down_exps", "feed_forward.experts.{e}.w2.weight", "per_expert"),
)

# Llama / Qwen3 (models/llama, qwen3)
_LLAMA_ATTENTION = (
    _r("q_proj.weight", "self_attn.q_proj.weight"),
    _r("k_proj.weight", "self_attn.k_proj.weight", "repeat_kv"),
    _r("v_proj.weight", "self_attn.v_proj.weight", "repeat_kv"),
    _r("o_proj.weight", "self_attn.o_proj.weight"),
)
_QWEN3_ATTENTION = _LLAMA_ATTENTION + (
    _r("q_norm.weight", "self_attn.q_norm.weight"),
    _r("k_norm.weight", "self_attn.k_norm.weight"),
)
_LLAMA_SWIGLU = (
    _r("gate.weight", "mlp.gate_proj.weight"),
    _r("up.weight", "mlp.up_proj.weight"),
    _r("down.weight", "mlp.down_proj.weight"),
)
_LLAMA_NORMS = {
    "mixer_norm": (_r("weight", "input_layernorm.weight"),),
    "ffn_norm": (_r("weight", "post_attention_layernorm.weight"),),
}


# Mamba-2 mixer (models/mamba2; the same names in granitemoehybrid's ``mamba.`` and nemotron_h)
def _mamba(prefix: str) -> tuple[HfRule, ...]:
    names = ("in_proj.weight", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D",
             "norm.weight", "out_proj.weight")  # fmt: skip
    return tuple(_r(n, prefix + n) for n in names)


HF_ARCHS: dict[str, HfArch] = {
    a.family: a
    for a in (
        HfArch("lfm2", "Lfm2ForCausalLM", "lfm2", "model.layers.{bid}.", _LFM2),
        HfArch(
            "lfm2moe",
            "Lfm2MoeForCausalLM",
            "lfm2_moe",
            "model.layers.{bid}.",
            {**_LFM2, "moe": _LFM2MOE_MOE},
        ),
        HfArch(
            "qwen3",
            "Qwen3ForCausalLM",
            "qwen3",
            "model.layers.{bid}.",
            {
                "model": _head("model.embed_tokens.weight", "model.norm.weight"),
                **_LLAMA_NORMS,
                "attention": _QWEN3_ATTENTION,
                "swiglu": _LLAMA_SWIGLU,
            },
        ),
        HfArch(
            "llama",
            "LlamaForCausalLM",
            "llama",
            "model.layers.{bid}.",
            {
                "model": _head("model.embed_tokens.weight", "model.norm.weight"),
                **_LLAMA_NORMS,
                "attention": _LLAMA_ATTENTION,
                "swiglu": _LLAMA_SWIGLU,
            },
        ),
        HfArch(
            "mamba2",
            "Mamba2ForCausalLM",
            "mamba2",
            "backbone.layers.{bid}.",
            {
                "model": _head("backbone.embeddings.weight", "backbone.norm_f.weight"),
                "mixer_norm": (_r("weight", "norm.weight"),),
                "ssm": _mamba("mixer."),
            },
        ),
        HfArch(
            "granitehybrid",
            "GraniteMoeHybridForCausalLM",
            "granitemoehybrid",
            "model.layers.{bid}.",
            {
                "model": _head("model.embed_tokens.weight", "model.norm.weight"),
                **_LLAMA_NORMS,
                "attention": _LLAMA_ATTENTION,
                "ssm": _mamba("mamba."),
                # its dense FFN is the "shared" MLP: input_linear rows = [gate; up]
                "swiglu": (
                    HfRule(
                        ("gate.weight", "up.weight"), "shared_mlp.input_linear.weight", "concat"
                    ),
                    _r("down.weight", "shared_mlp.output_linear.weight"),
                ),
            },  # fmt: skip
        ),
        HfArch(
            "nemotron_h",
            "NemotronHForCausalLM",
            "nemotron_h",
            # one operator per block: a layer with an MLP becomes a Mamba-2 block + an MLP block
            "backbone.layers.{bid}.",
            {
                "model": _head("backbone.embeddings.weight", "backbone.norm_f.weight"),
                "mixer_norm": (_r("weight", "norm.weight"),),
                "ffn_norm": (_r("weight", "norm.weight"),),  # the MLP block's own pre-norm
                "ssm": _mamba("mixer."),
                "mlp": (
                    _r("up.weight", "mixer.up_proj.weight"),
                    _r("down.weight", "mixer.down_proj.weight"),
                ),
            },  # fmt: skip
            ties_head=False,  # NemotronHForCausalLM has no tied weights
            null_attention=True,
        ),
    )
}

# NemotronH block 0: an attention block whose output projection is zero, an exact no-op
# (``h = x + 0``), as in the GGUF (``names.TENSOR_TABLE["nemotron_h"]["null_attention"]``). Without
# any attention block transformers 5.23's NemotronH cannot ``generate()`` (its cache has no layer
# that tracks the sequence length). HF name -> what it holds: "ones" (d_model,), "zeros_in"
# (NULL_ATTENTION_HEAD_DIM, d_model), "zeros_out" (d_model, NULL_ATTENTION_HEAD_DIM).
NULL_ATTENTION: tuple[tuple[str, str], ...] = (
    ("norm.weight", "ones"),
    ("mixer.q_proj.weight", "zeros_in"),
    ("mixer.k_proj.weight", "zeros_in"),
    ("mixer.v_proj.weight", "zeros_in"),
    ("mixer.o_proj.weight", "zeros_out"),
)

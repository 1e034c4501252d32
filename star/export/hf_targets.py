"""Which transformers causal-LM class computes exactly what ``star.nn.StarModel`` computes.

``check_hf_exportable(spec)`` returns the ``HfArch`` (``star.export.hf_names``) of a spec or raises
``UnsupportedGenome`` naming the first offending layer, its operator and why, before anything is
written. The families follow the llama.cpp ones (``star.export.targets``) so a winner leaves in the
same family it was searched in:

- short conv -> ``Lfm2ForCausalLM`` (``Lfm2MoeForCausalLM`` with MoE);
- Mamba-2 -> ``GraniteMoeHybridForCausalLM`` with attention or SwiGLU FFNs (its "shared MLP",
  no experts, neutral multipliers), ``NemotronHForCausalLM`` with squared-ReLU MLPs,
  ``Mamba2ForCausalLM`` for a pure stack;
- attention only -> ``Qwen3ForCausalLM`` with QK-norm, ``LlamaForCausalLM`` without.

transformers is stricter than llama.cpp in one way: a config holds ONE value per hyper-parameter
(FFN width, SSM shape...), so per-layer MLP widths are refused; per-layer KV head counts are
exported exactly by repeating K/V heads up to one count (``hf_config.hf_kv_heads``). Like the
pinned llama.cpp it cannot run LFM2 or GraniteMoeHybrid without an attention layer (5.23 reads the
sequence position from an attention layer's cache; attention-free NemotronH gets the no-op
attention block that the GGUF also carries, ``hf_names.NULL_ATTENTION``). Sliding-window
attention, linear attention, LayerNorm and MoE outside LFM2 are refused (no mapped class runs them
as ``star.nn`` does). It is looser in q width: Qwen3, Llama and GraniteMoeHybrid take a head_dim
with n_heads * head_dim != d_model.

One known inexactness: Lfm2Moe divides the chosen experts' sigmoid weights by (sum + 1e-6) where
``star.nn`` and llama.cpp divide by max(sum, 6.1e-5), a relative 1e-6 per MoE layer (the
24-layer lfm2-8b-a1b at proxy scale: 2.7e-4 max abs on logits of +-51, 9e-5 with llama.cpp's rule).
"""

from __future__ import annotations

from star.export import checks
from star.export.checks import (
    _check_attention,
    _check_ssm,
    _check_swiglu,
    _conv,
    _dense_then_moe,
    _fail,
    _ffn,
    _moe,
    _only_mixers,
    _uniform,
)
from star.export.hf_names import HF_ARCHS, HfArch
from star.export.targets import select_family
from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    LayerSpec,
    Routing,
    ShortConvSpec,
    SSMSpec,
    TokenMixer,
)


def check_hf_exportable(spec: ArchSpec) -> HfArch:
    """The transformers architecture that runs ``spec`` exactly; ``UnsupportedGenome`` if none."""
    arch = select_hf_arch(spec)
    _CHECKS[arch.family](spec, arch.architecture)
    return arch


def select_hf_arch(spec: ArchSpec) -> HfArch:
    """Pick the family by the GGUF targets' rule (``select_family``); the per-family check
    comes after."""
    return HF_ARCHS[select_family(spec, "transformers causal LM")]


def _check_expand(spec: ArchSpec, ssms: list[LayerSpec], target: str) -> None:
    """Mamba2 / GraniteMoeHybrid derive d_inner as an integer ``expand`` times d_model."""
    m = ssms[0].mixer
    assert isinstance(m, SSMSpec)
    if m.d_inner % spec.d_model:
        raise _fail(
            ssms[0],
            "ssm",
            f"{target} derives d_inner as an integer expand * d_model "
            f"({m.d_inner} is not a multiple of {spec.d_model})",
            target,
        )


def _need_attention(spec: ArchSpec, operator: str, target: str) -> None:
    if not spec.attention_layers:
        raise _fail(
            None,
            operator,
            f"{target} needs at least one attention layer: transformers 5.23 finds the sequence "
            "position only in an attention layer's cache, so an attention-free model loads but "
            "cannot generate",
            target,
        )


def _check_lfm2_mixers(spec: ArchSpec, target: str) -> None:
    _only_mixers(spec, (ShortConvSpec, AttentionSpec), "short conv and attention", target)
    _need_attention(spec, "shortconv", target)
    convs = spec.layers_of(TokenMixer.SHORTCONV)
    _uniform(spec, convs, lambda la: _conv(la).kernel, "short-conv kernel", "shortconv", target)
    if convs and _conv(convs[0]).kernel < 2:
        raise _fail(convs[0], "shortconv", "the conv kernel must be >= 2", target)
    _check_attention(
        spec, spec.attention_layers, target,
        qk_norm=True, swa=False, uniform_kv=False, q_is_d_model=True,
    )  # fmt: skip


def _check_lfm2(spec: ArchSpec, target: str) -> None:
    _check_lfm2_mixers(spec, target)
    _check_swiglu(spec, list(spec.layers), target)


def _check_lfm2moe(spec: ArchSpec, target: str) -> None:
    _check_lfm2_mixers(spec, target)
    moe_layers = _dense_then_moe(spec, target)
    for layer, c in moe_layers:
        if c.routing != Routing.SIGMOID:
            raise _fail(
                layer, "moe", f"{target} routes with sigmoid, not {c.routing.value}", target
            )

    def shape(la: LayerSpec) -> tuple[object, ...]:
        c = _moe(la)
        return (c.n_experts, c.top_k, c.expert_dim, c.expert_bias)

    what = "MoE shape (experts, top_k, expert width, selection bias)"
    _uniform(spec, [la for la, _ in moe_layers], shape, what, "moe", target)


def _check_pure_attention(spec: ArchSpec, target: str) -> None:
    _only_mixers(spec, (AttentionSpec,), "attention", target)
    _check_attention(
        spec, list(spec.layers), target,
        qk_norm=target == HF_ARCHS["qwen3"].architecture, swa=False, uniform_kv=False,
        q_is_d_model=False,
    )  # fmt: skip
    _check_swiglu(spec, list(spec.layers), target)


def _check_mamba2(spec: ArchSpec, target: str) -> None:
    checks.CHECKS["mamba2"](spec, target)
    _check_expand(spec, list(spec.layers), target)


def _check_granitehybrid(spec: ArchSpec, target: str) -> None:
    _only_mixers(spec, (SSMSpec, AttentionSpec), "Mamba-2 and attention", target)
    _check_swiglu(spec, list(spec.layers), target)
    _need_attention(spec, "ssm", target)
    ssms = spec.layers_of(TokenMixer.SSM)
    _check_ssm(spec, ssms, target)
    _check_expand(spec, ssms, target)
    _check_attention(
        spec, spec.attention_layers, target,
        qk_norm=False, swa=False, uniform_kv=False, q_is_d_model=False,
    )  # fmt: skip


def _check_nemotron_h(spec: ArchSpec, target: str) -> None:
    checks.CHECKS["nemotron_h"](spec, target)
    mlps = [la for la in spec.layers if la.channel is not None]
    _uniform(spec, mlps, lambda la: _ffn(la).ffn_dim, "MLP width", "mlp", target)


_CHECKS = {
    "lfm2": _check_lfm2,
    "lfm2moe": _check_lfm2moe,
    "qwen3": _check_pure_attention,
    "llama": _check_pure_attention,
    "mamba2": _check_mamba2,
    "granitehybrid": _check_granitehybrid,
    "nemotron_h": _check_nemotron_h,
}

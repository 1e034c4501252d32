"""Which stock llama.cpp architecture runs an ``ArchSpec`` exactly, and why the others do not.

``check_exportable(spec)`` returns the most specific ``Target`` whose graph computes exactly what
``star.nn.StarModel`` computes, or raises ``UnsupportedGenome`` naming the first offending layer,
its operator and the reason. Nothing here touches files. The choice is a fixed rule:

- short conv present -> ``lfm2`` (``lfm2moe`` when a layer has MoE). Short conv runs nowhere else.
- Mamba-2 present -> ``granitehybrid`` when there is attention or a SwiGLU FFN, ``nemotron_h``
  when the FFNs are squared-ReLU MLPs, ``mamba2`` for a pure Mamba-2 stack.
- attention only -> ``qwen3`` with QK-norm, ``llama`` without (llama.cpp's ``llama`` RoPE is
  interleaved, so q/k rows are permuted per head at export: an exact re-indexing. ``llama`` is
  preferred over ``qwen2`` (rotate-half, no permutation) because ``qwen2`` fixes the q width to
  d_model and is a less common runtime target; both are exact).

Why the rest are rejected: no llama.cpp architecture runs kernelised linear attention or mixes
short conv with Mamba-2; LayerNorm with bias is used by none of these graphs; ``nemotron_h``
attention has no positional encoding while ours always applies RoPE; the MoE graphs of other
architectures (softmax Mixtral-style in ``llama``/``granitehybrid``) are not mapped yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from star.export.checks import CHECKS, channel_name
from star.export.errors import UnsupportedGenome
from star.genome.spec import ArchSpec, AttentionSpec, MoESpec, Norm, TokenMixer


@dataclass(frozen=True)
class Target:
    """One stock llama.cpp architecture and what of our operator space it runs exactly."""

    name: str  # general.architecture
    token_mixers: tuple[str, ...]
    channel_mixers: tuple[str, ...]
    norms: tuple[str, ...]
    rope: str
    constraints: tuple[str, ...]

    def check(self, spec: ArchSpec) -> None:
        """Raise ``UnsupportedGenome`` at the first layer this architecture cannot run exactly."""
        CHECKS[self.name](spec, self.name)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "token_mixers": list(self.token_mixers),
            "channel_mixers": list(self.channel_mixers),
            "norms": list(self.norms),
            "rope": self.rope,
            "constraints": list(self.constraints),
        }


_RMS = ("rmsnorm",)
_NEOX = "rotate-half (NEOX), written as is"
_INTERLEAVED = "interleaved in llama.cpp: q/k rows permuted per head at export"

LFM2 = Target(
    "lfm2",
    ("shortconv", "attention (QK-norm)", "swa (QK-norm)"),
    ("swiglu",),
    _RMS,
    _NEOX,
    (
        "every layer: short conv or GQA attention with QK-norm, then SwiGLU",
        "at least one short-conv and one attention layer (pure stacks crash this build)",
        "one conv kernel (>= 2); one FFN width",
        "attention: one head count, n_heads * head_dim == d_model; KV heads may vary per layer",
        "sliding window: all attention layers SWA with one window, or none",
    ),
)
LFM2MOE = Target(
    "lfm2moe",
    ("shortconv", "attention (QK-norm)"),
    ("swiglu (leading layers)", "moe (sigmoid routing)"),
    _RMS,
    _NEOX,
    (
        "as lfm2, without sliding window",
        "FFN: k >= 0 leading dense SwiGLU layers of one width, then MoE in every layer",
        "MoE: one expert count, top-k and expert width; sigmoid routing (expert bias optional)",
    ),
)
QWEN3 = Target(
    "qwen3",
    ("attention (QK-norm)",),
    ("swiglu",),
    _RMS,
    _NEOX,
    (
        "every layer full GQA attention with QK-norm, then SwiGLU",
        "one head count, KV head count and head_dim; one FFN width; no sliding window",
    ),
)
LLAMA = Target(
    "llama",
    ("attention (no QK-norm)",),
    ("swiglu",),
    _RMS,
    _INTERLEAVED,
    (
        "every layer full GQA attention without QK-norm, then SwiGLU",
        "one head count, KV head count and head_dim; one FFN width; no sliding window",
    ),
)
MAMBA2 = Target(
    "mamba2",
    ("ssm",),
    ("none",),
    _RMS,
    "none",
    ("every layer Mamba-2 without FFN", "one SSM shape (heads, head_dim, state, groups, kernel)"),
)
GRANITEHYBRID = Target(
    "granitehybrid",
    ("ssm", "attention (no QK-norm)"),
    ("swiglu",),
    _RMS,
    _INTERLEAVED,
    (
        "every layer Mamba-2 or full GQA attention without QK-norm, then SwiGLU of one width",
        "at least one attention layer (without one this build aborts at context creation)",
        "one SSM shape with d_inner == 2 * d_model (llama.cpp asserts it)",
        "attention: one head count and head_dim; KV heads may vary per layer; no sliding window",
    ),
)
NEMOTRON_H = Target(
    "nemotron_h",
    ("ssm",),
    ("mlp (squared ReLU)", "none"),
    _RMS,
    "none (its attention has no RoPE, so attention layers are rejected)",
    (
        "every layer Mamba-2, optionally followed by a squared-ReLU MLP",
        "a layer with an MLP becomes two GGUF blocks (Mamba-2 block, MLP block)",
        "one SSM shape; MLP widths may vary per layer",
        "plus a leading attention block with zero output projection (exact no-op, one 32-wide"
        " KV head): llama.cpp aborts on a nemotron_h without any KV-cache layer",
    ),
)

TARGETS: dict[str, Target] = {
    t.name: t for t in (LFM2, LFM2MOE, QWEN3, LLAMA, MAMBA2, GRANITEHYBRID, NEMOTRON_H)
}


def supported_targets() -> tuple[Target, ...]:
    """Every architecture the exporter writes, most specific first within each family."""
    return tuple(TARGETS.values())


def check_exportable(spec: ArchSpec) -> Target:
    """The target that runs ``spec`` exactly; raises ``UnsupportedGenome`` otherwise."""
    target = select_target(spec)
    target.check(spec)
    return target


def select_target(spec: ArchSpec) -> Target:
    """Pick the architecture family by rule (module docstring); does not check the details."""
    return TARGETS[select_family(spec, "stock llama.cpp architecture")]


def select_family(spec: ArchSpec, runner: str) -> str:
    """The family (lfm2, lfm2moe, granitehybrid, nemotron_h, mamba2, qwen3, llama) whose graph
    could run ``spec``, by the rule of the module docstring: the one rule behind both the GGUF
    targets and the Hugging Face classes (``star.export.hf_targets``). ``runner`` names who
    cannot run a refused spec ("stock llama.cpp architecture", "transformers causal LM").
    """
    if not spec.layers:
        raise UnsupportedGenome(layer=None, operator="model", reason="the spec has no layers")
    for layer in spec.layers:
        if layer.mixer.kind == TokenMixer.LINEAR_ATTENTION:
            raise UnsupportedGenome(
                layer=layer.index,
                operator="linear_attention",
                reason=f"no {runner} runs kernelised (elu+1) linear attention",
            )
        if layer.norm != Norm.RMSNORM:
            raise UnsupportedGenome(
                layer=layer.index,
                operator=layer.norm.value,
                reason=f"every {runner} here uses RMSNorm (w * x / rms(x)) only",
            )
    kinds = {layer.mixer.kind for layer in spec.layers}
    if TokenMixer.SHORTCONV in kinds:
        if TokenMixer.SSM in kinds:
            first = next(la for la in spec.layers if la.mixer.kind == TokenMixer.SSM)
            raise UnsupportedGenome(
                layer=first.index,
                operator="ssm",
                reason=f"no {runner} mixes short conv (lfm2) and Mamba-2 (mamba2, granitehybrid,"
                " nemotron_h) in one model",
            )
        has_moe = any(isinstance(la.channel, MoESpec) for la in spec.layers)
        return "lfm2moe" if has_moe else "lfm2"
    if TokenMixer.SSM in kinds:
        channels = {channel_name(la) for la in spec.layers}
        if any(la.mixer.kind.is_attention for la in spec.layers) or channels & {"swiglu", "moe"}:
            return "granitehybrid"  # its check names a MoE layer and why
        if "mlp" in channels:
            return "nemotron_h"
        return "mamba2"
    if any(isinstance(la.mixer, AttentionSpec) and la.mixer.qk_norm for la in spec.layers):
        return "qwen3"
    return "llama"


def block_layout(spec: ArchSpec, target: Target) -> tuple[list[int], list[int | None], int]:
    """GGUF block of each layer's mixer and of its channel mixer, and the GGUF block count.

    One block per layer everywhere except ``nemotron_h``, whose blocks hold ONE operator each: a
    layer with an MLP becomes a Mamba-2 block followed by an MLP block, after a leading no-op
    attention block (``names.TENSOR_TABLE["nemotron_h"]["null_attention"]``).
    """
    mixer_bid: list[int] = []
    channel_bid: list[int | None] = []
    bid = 1 if target.name == "nemotron_h" else 0  # nemotron_h block 0: the no-op attention
    for layer in spec.layers:
        mixer_bid.append(bid)
        if target.name == "nemotron_h":
            if layer.channel is not None:
                bid += 1
                channel_bid.append(bid)
            else:
                channel_bid.append(None)
        else:
            channel_bid.append(bid if layer.channel is not None else None)
        bid += 1
    return mixer_bid, channel_bid, bid

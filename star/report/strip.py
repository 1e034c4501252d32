"""A candidate's layer pattern: one letter and one coloured block per layer.

People choosing an on-device architecture read a hybrid by where its attention layers sit among
its convolutions or SSM layers, so every display (the HTML report, the run page, the CLI
frontier table) draws the same strip from the same table here: the token mixer picks the
block's letter and fill, the channel mixer a band under it (MoE layers stand out).

Works on an ``ArchSpec`` or on its stored form (``asdict(ArchSpec)``, as candidates keep it in
``arch_spec["deploy"]``), so a report never needs to re-decode a genome to draw it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from star.genome.spec import ArchSpec

# token mixer kind -> (letter, fill, legend name, short name in candidate names). Okabe-Ito
# colours: distinguishable with the common colour-vision deficiencies.
MIXERS: dict[str, tuple[str, str, str, str]] = {
    "attention": ("A", "#D55E00", "attention (global GQA)", "attn"),
    "swa": ("W", "#E69F00", "sliding-window attention", "SWA"),
    "shortconv": ("C", "#0072B2", "gated short conv", "conv"),
    "ssm": ("S", "#009E73", "SSM (Mamba-2)", "SSM"),
    "linear_attention": ("L", "#CC79A7", "linear attention", "lin-attn"),
}
UNKNOWN_MIXER = ("?", "#999999", "unknown operator", "?")
# channel mixer kind -> (letter, band colour, legend name)
CHANNELS: dict[str, tuple[str, str, str]] = {
    "swiglu": ("F", "#C8C8C8", "dense SwiGLU FFN"),
    "mlp": ("M", "#7F7F7F", "dense squared-ReLU MLP"),
    "moe": ("E", "#111111", "mixture of experts (MoE)"),
    "none": ("-", "#FFFFFF", "no channel mixer"),
}


@dataclass(frozen=True)
class Block:
    """One layer as drawn: letters, colours and a one-line description for its tooltip."""

    index: int
    mixer: str  # token mixer kind ("attention", "shortconv", ...)
    channel: str  # channel mixer kind ("swiglu", "moe", "none", ...)
    letter: str
    fill: str
    band: str
    title: str


def _layers(spec: ArchSpec | Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    doc = asdict(spec) if isinstance(spec, ArchSpec) else spec
    return list(doc.get("layers") or ())


def _kind(part: Any) -> str:
    """The ``kind`` of a stored mixer (an enum value after ``asdict``, a string in JSON)."""
    if not isinstance(part, Mapping):
        return "none"
    kind = part.get("kind")
    return str(getattr(kind, "value", kind))


def _mixer_text(mixer: Mapping[str, Any], kind: str) -> str:
    if kind in ("attention", "swa"):
        text = (f"{kind if kind == 'swa' else 'attention'}: {mixer.get('n_heads')} Q / "
                f"{mixer.get('n_kv_heads')} KV heads x {mixer.get('head_dim')}")
        if mixer.get("window"):
            text += f", window {mixer['window']}"
        return text + (", QK-norm" if mixer.get("qk_norm") else "")
    if kind == "shortconv":
        return f"gated short conv, kernel {mixer.get('kernel')}"
    if kind == "ssm":
        return (f"SSM: {mixer.get('n_heads')} heads x {mixer.get('head_dim')}, "
                f"state {mixer.get('state')}")
    if kind == "linear_attention":
        return f"linear attention: {mixer.get('n_heads')} heads x {mixer.get('head_dim')}"
    return kind


def _channel_text(channel: Any, kind: str) -> str:
    if kind == "moe" and isinstance(channel, Mapping):
        return (f"MoE {channel.get('n_experts')} experts, top-{channel.get('top_k')}, "
                f"width {channel.get('expert_dim')}")
    if kind in ("swiglu", "mlp") and isinstance(channel, Mapping):
        return f"{'SwiGLU' if kind == 'swiglu' else 'MLP'} {channel.get('ffn_dim')}"
    return "no FFN"


def blocks(spec: ArchSpec | Mapping[str, Any]) -> list[Block]:
    """One ``Block`` per layer, in order."""
    out = []
    for i, layer in enumerate(_layers(spec)):
        mixer = layer.get("mixer") or {}
        kind = _kind(mixer)
        channel = _kind(layer.get("channel"))
        letter, fill, _, _ = MIXERS.get(kind, UNKNOWN_MIXER)
        band = CHANNELS.get(channel, CHANNELS["none"])[1]
        ffn = _channel_text(layer.get("channel"), channel)
        title = f"layer {i}: {_mixer_text(mixer, kind)}; {ffn}"
        out.append(Block(i, kind, channel, letter, fill, band, title))
    return out


def layer_pattern(spec: ArchSpec | Mapping[str, Any]) -> str:
    """One letter per layer for its token mixer: ``CCACCACCACAC`` (legend: ``MIXERS``)."""
    return "".join(b.letter for b in blocks(spec))


def channel_pattern(spec: ArchSpec | Mapping[str, Any]) -> str:
    """One letter per layer for its channel mixer: ``F`` dense SwiGLU, ``E`` MoE, ``-`` none."""
    return "".join(CHANNELS.get(b.channel, CHANNELS["none"])[0] for b in blocks(spec))


def block_colours(spec: ArchSpec | Mapping[str, Any]) -> list[tuple[str, str]]:
    """(fill, band) colours per layer, for any display that draws the strip itself."""
    return [(b.fill, b.band) for b in blocks(spec)]


def mix_summary(spec: ArchSpec | Mapping[str, Any]) -> str:
    """``12 layers (8 conv + 4 attn)``; MoE layers are counted after a semicolon."""
    bs = blocks(spec)
    counts: dict[str, int] = {}
    for b in bs:
        counts[b.mixer] = counts.get(b.mixer, 0) + 1
    known = list(MIXERS)
    order = sorted(counts, key=lambda k: (-counts[k], known.index(k) if k in known else 99))
    parts = " + ".join(f"{counts[k]} {MIXERS.get(k, UNKNOWN_MIXER)[3]}" for k in order)
    moe = sum(b.channel == "moe" for b in bs)
    if moe:
        parts += f"; {moe} MoE"
    return f"{len(bs)} layer{'s' if len(bs) != 1 else ''} ({parts})"


def legend() -> list[tuple[str, str, str]]:
    """(letter, colour, meaning) of every mixer, then every channel band."""
    return ([(letter, fill, name) for letter, fill, name, _ in MIXERS.values()]
            + [(letter, band, name) for letter, band, name in CHANNELS.values()])

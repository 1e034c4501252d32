"""What ``star genome match`` prints: the comparison table and the provenance header."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from star.cost import count_params, kv_bytes_per_token
from star.genome import Genome
from star.genome.match import MatchResult
from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    FFNSpec,
    LinearAttentionSpec,
    MoESpec,
    ShortConvSpec,
    SSMSpec,
)

KV_BYTES = 2  # f16 KV cache, llama.cpp's default


def shape(spec: ArchSpec) -> str:
    """The distinct operators of a spec, e.g. ``attention 16/4x64 + swiglu 4992``."""
    seen: list[str] = []
    for layer in spec.layers:
        m, c = layer.mixer, layer.channel
        if isinstance(m, AttentionSpec):
            mixer = f"{m.kind.value} {m.n_heads}/{m.n_kv_heads}x{m.head_dim}"
        elif isinstance(m, SSMSpec):
            mixer = f"ssm {m.n_heads}x{m.head_dim} state {m.state}"
        elif isinstance(m, LinearAttentionSpec):
            mixer = f"linear_attention {m.n_heads}x{m.head_dim}"
        else:
            assert isinstance(m, ShortConvSpec)
            mixer = f"shortconv k{m.kernel}"
        if isinstance(c, FFNSpec):
            mixer += f" + {c.kind.value} {c.ffn_dim}"
        elif isinstance(c, MoESpec):
            mixer += f" + moe {c.n_experts}x{c.expert_dim} top{c.top_k}"
        if mixer not in seen:
            seen.append(mixer)
    return ", ".join(seen)


def match_table(genome: Genome, ref: Genome, result: MatchResult, arch: str) -> Table:
    """GENOME, REF and the matched genome side by side."""
    from star.export import UnsupportedGenome, check_exportable

    table = Table(title=f"size match ({result.count.replace('_', '-')} parameters, by "
                        f"{result.by}; KV at f16)")
    for col in ("genome", "arch", "layers", "d_model", "vocab", "params", "non-embedding",
                "KV B/token", "vs REF"):
        table.add_column(col, justify="left" if col in ("genome", "arch") else "right")
    rows = (("GENOME " + (genome.name or ""), genome), ("REF " + (ref.name or ""), ref),
            ("matched", result.genome))
    for label, g in rows:
        spec = g.to_spec()
        counts = count_params(spec)
        try:
            target = check_exportable(spec).name
        except UnsupportedGenome:
            target = "-"
        value = counts.params if result.count == "total" else counts.non_embedding
        table.add_row(label, target, str(spec.n_layers), str(spec.d_model),
                      f"{spec.vocab_size:,}", f"{counts.params:,}", f"{counts.non_embedding:,}",
                      f"{kv_bytes_per_token(spec, KV_BYTES):,.0f}",
                      f"{(value - result.target) / result.target:+.2%}")
    return table


def match_header(file: Path, ref_file: Path, genome: Genome, ref: Genome, result: MatchResult,
                 arch: str, keep_embedding: bool) -> str:
    """Provenance comments in the style of ``genomes/*.yaml``."""
    spec, ref_spec, src = result.genome.to_spec(), ref.to_spec(), genome.to_spec()
    p, rp = result.params, result.ref_params
    what = "total" if result.count == "total" else "non-embedding"
    how = (f"by width at fixed depth: d_model {src.d_model} -> {spec.d_model}"
           if result.by == "width" else
           f"by depth at fixed width: {src.n_layers} -> {spec.n_layers} layers")
    trim = f", FFN widths {result.ffn_shift:+d} x 64 after proportional scaling" if (
        result.ffn_shift) else ""
    if keep_embedding:
        emb = f"vocabulary ({spec.vocab_size:,}), embedding and context kept from {file}"
    else:
        tied = "tied" if spec.tie_embeddings else "untied"
        emb = (f"vocabulary {spec.vocab_size:,}, {tied} embeddings and context "
               f"{spec.context_length:,} taken from {ref_file} (the comparison is about "
               "architecture)")
    lines = [
        f"Size-matched baseline (star genome match): {genome.name or file} rescaled to the {what} "
        f"parameter count of {ref.name or ref_file}.",
        f"Provenance: {file} (llama.cpp arch {arch}), {how}{trim}; "
        f"{result.error:+.2%} from the target.",
        f"Shape: {spec.n_layers} layers, {shape(spec)}.",
        f"{emb[0].upper()}{emb[1:]}.",
        f"Parameters: {p.params:,} total ({ref.name or 'REF'}: {rp.params:,}), "
        f"{p.non_embedding:,} non-embedding ({rp.non_embedding:,}).",
        f"KV cache: {kv_bytes_per_token(spec, KV_BYTES):,.0f} B/token at f16 "
        f"({ref.name or 'REF'}: {kv_bytes_per_token(ref_spec, KV_BYTES):,.0f}). "
        f"Exports as llama.cpp arch {arch} (checked).",
    ]
    return "".join(f"# {line}\n" for line in lines)

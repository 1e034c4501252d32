"""Specs wide enough for K-quants: every matrix row (ne0) a multiple of 256, so llama-quantize's
mixtures apply as on real models instead of falling back (``export_specs.SPECS`` have rows of
64, where every K-quant falls back to Q5_0 / Q8_0).

One spec per export target, plus a 16-layer LFM2-shaped stack (the layer-position rules need
n_layer >= 16 to show), a GQA-4 llama (the n_gqa >= 4 rules) and MoE with 8 experts (the
8-expert bumps). Small enough to quantize in milliseconds.
"""

from __future__ import annotations

from star.genome.spec import ArchSpec
from tests.export.export_specs import arch, attn, conv, mlp, moe, ssm, swiglu

D = 256


LFM2_LAYOUT = (2, 5, 8, 10, 12, 14)  # LFM2's attention layers out of 16

KSPECS: dict[str, ArchSpec] = {
    "lfm2": arch(
        [(attn(heads=4, kv=2, hd=64) if i in LFM2_LAYOUT else conv(), swiglu(512))
         for i in range(16)],
        name="lfm2-k", d_model=D,
    ),
    "lfm2moe": arch(
        [(conv(), swiglu(512)), (attn(heads=4, kv=2, hd=64), moe(experts=8, ff=256)),
         (conv(), moe(experts=8, ff=256)), (attn(heads=4, kv=2, hd=64), moe(experts=8, ff=256))],
        name="lfm2moe-k", d_model=D, tie=False,
    ),
    "qwen3": arch([(attn(heads=4, kv=2, hd=64), swiglu(512))] * 4, name="qwen3-k", d_model=D,
                  tie=False),
    # GQA 4 (8 query heads, 2 KV heads of 32): Q2_K / IQ3_S / IQ4_* give attn_v more bits
    "llama": arch([(attn(heads=8, kv=2, hd=32, qk_norm=False), swiglu(512))] * 4,
                  name="llama-k", d_model=D),
    "mamba2": arch([(ssm(heads=8, hd=64, state=16, groups=2), None)] * 3, name="mamba2-k",
                   d_model=D, tie=False),
    "granitehybrid": arch(
        [(ssm(heads=8, hd=64, groups=1), swiglu(512)),
         (attn(heads=4, kv=2, hd=64, qk_norm=False), swiglu(512)),
         (ssm(heads=8, hd=64, groups=1), swiglu(512))],
        name="granitehybrid-k", d_model=D,
    ),
    "nemotron_h": arch([(ssm(heads=8, hd=64), mlp(512)), (ssm(heads=8, hd=64), None),
                        (ssm(heads=8, hd=64), mlp(256))], name="nemotron_h-k", d_model=D,
                       tie=False),
}  # fmt: skip

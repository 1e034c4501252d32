"""Small specs and models for the ExecuTorch tests, with weights that make every operator count.

Weights are redrawn by ``tests.export.export_specs.randomize`` (O(1) effect per parameter), so a
wrong cache slot, a lost state or a stale position shows as a large logit difference.
"""

from __future__ import annotations

import torch

from star.genome.spec import ArchSpec, LinearAttentionSpec, Norm, Routing
from star.nn import StarModel
from tests.export.export_specs import arch, attn, build_model, conv, mlp, moe, ssm, swiglu

CHUNK = 4  # prefill chunk of the eager tests: several calls inside a short sequence
MAX_CONTEXT = 32


def linear_attention(heads: int = 4, hd: int = 16) -> LinearAttentionSpec:
    return LinearAttentionSpec(n_heads=heads, head_dim=hd)


# One layer per operator (and variant) whose static form is tested on its own.
OPERATORS: dict[str, ArchSpec] = {
    "attention-gqa-qknorm": arch([(attn(kv=2), swiglu())]),
    "attention-mqa-no-qknorm": arch([(attn(kv=1, qk_norm=False), swiglu())]),
    "swa-ring": arch([(attn(window=5), swiglu())]),  # ring of 5 - 1 + CHUNK = 8 slots < 32
    "swa-wide": arch([(attn(window=40), swiglu())]),  # window > max_context: a plain cache
    "shortconv": arch([(conv(), swiglu())]),
    "shortconv-k5": arch([(conv(kernel=5), swiglu())]),
    "linear-attention": arch([(linear_attention(), swiglu())]),
    "ssm-2-groups": arch([(ssm(), None)]),
    "ssm-1-group": arch([(ssm(groups=1), None)]),
}

MOES: dict[str, ArchSpec] = {
    "moe-sigmoid-bias": arch([(conv(), moe())]),
    "moe-softmax": arch([(conv(), moe(routing=Routing.SOFTMAX, bias=False, top_k=3))]),
}

# Every operator in one model: shared conv weights (layers 0 and 4), an untied head, both MoE
# routings, an MLP and a pure SSM layer (no FFN); a second model has LayerNorm everywhere.
MIXED = arch(
    [
        (conv(), swiglu()),
        (ssm(), moe()),
        (linear_attention(), swiglu()),
        (attn(kv=2), mlp()),
        (conv(), swiglu()),
        (attn(window=6), moe(routing=Routing.SOFTMAX, bias=False)),
        (ssm(groups=1), None),
    ],
    name="mixed-tiny",
    tie=False,
    share={0: (0, 1), 4: (0, 1)},
)
MIXED_LAYERNORM = arch(
    [(conv(), swiglu()), (attn(), swiglu()), (linear_attention(), swiglu())],
    name="mixed-layernorm-tiny",
    norm=Norm.LAYERNORM,
)


def model_of(spec: ArchSpec, seed: int = 0) -> StarModel:
    return build_model(spec, seed).eval()


def random_tokens(n: int, vocab: int, seed: int = 0) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=gen).tolist()

"""The GGUF metadata (hyperparameters) of a spec exported as a target.

Values are derived from the spec alone; ``star.export.validate`` then checks them against the
tensors, the way llama.cpp's loader would.
"""

from __future__ import annotations

from gguf import GGUFValueType

from star.export import names as N
from star.export.quant import Quant
from star.export.targets import Target, block_layout
from star.export.tokenizer import SyntheticTokenizer
from star.genome.spec import ArchSpec, AttentionSpec, FFNSpec, MoESpec, ShortConvSpec, SSMSpec

Metadata = dict[str, tuple[object, GGUFValueType]]

EXPERT_GATING_SIGMOID = 2  # llama.cpp LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID


def build_metadata(
    spec: ArchSpec, target: Target, *, quant: Quant, tokenizer: SyntheticTokenizer, name: str
) -> Metadata:
    arch = target.name
    meta: Metadata = {}

    def put(template: str, value: object) -> None:
        key = template.format(arch=arch)
        vtype = N.ARR if isinstance(value, list) else N.KEY_TYPES[template]
        meta[key] = (value, vtype)

    mixer_bid, channel_bid, n_blocks = block_layout(spec, target)
    put(N.K_ARCH, arch)
    put(N.K_NAME, name)
    put(N.K_FILE_TYPE, int(quant.file_type))
    put(N.K_CONTEXT, spec.context_length)
    put(N.K_EMBD, spec.d_model)
    put(N.K_BLOCKS, n_blocks)
    put(N.K_VOCAB, spec.vocab_size)
    put(N.K_RMS_EPS, float(spec.norm_eps))

    attns = [(la, la.mixer) for la in spec.layers if isinstance(la.mixer, AttentionSpec)]
    ssms = [la.mixer for la in spec.layers if isinstance(la.mixer, SSMSpec)]
    convs = [la.mixer for la in spec.layers if isinstance(la.mixer, ShortConvSpec)]
    dense = [(la, la.channel) for la in spec.layers if isinstance(la.channel, FFNSpec)]
    moes = [la.channel for la in spec.layers if isinstance(la.channel, MoESpec)]

    if attns:
        a0 = attns[0][1]
        put(N.K_HEADS, a0.n_heads)
        kv = [0] * n_blocks
        for la, a in attns:
            kv[mixer_bid[la.index]] = a.n_kv_heads
        if len(set(kv)) == 1:
            put(N.K_HEADS_KV, kv[0])  # pure attention: one value
        else:
            put(N.K_HEADS_KV, kv)  # per block; 0 marks a recurrent block
        put(N.K_KEY_LEN, a0.head_dim)
        put(N.K_VALUE_LEN, a0.head_dim)
        put(N.K_ROPE_DIMS, a0.head_dim)
        put(N.K_ROPE_BASE, float(spec.rope_theta))
        if a0.window > 0:
            put(N.K_SWA, a0.window)
    elif arch == "mamba2":
        put(N.K_HEADS, 0)  # no attention; llama.cpp's converter writes 0 too
    elif arch == "nemotron_h":
        # only the no-op attention block of block 0 (see names.TENSOR_TABLE["nemotron_h"])
        put(N.K_HEADS, 1)
        put(N.K_HEADS_KV, [1] + [0] * (n_blocks - 1))
        put(N.K_KEY_LEN, N.NULL_ATTENTION_HEAD_DIM)
        put(N.K_VALUE_LEN, N.NULL_ATTENTION_HEAD_DIM)
    if arch == "nemotron_h":
        ff = [0] * n_blocks
        for la, f in dense:
            bid = channel_bid[la.index]
            assert bid is not None
            ff[bid] = f.ffn_dim
        put(N.K_FF, ff)  # per block; > 0 marks an MLP block
        put(N.K_LN_EPS, float(spec.norm_eps))
    elif dense:
        put(N.K_FF, dense[0][1].ffn_dim)
    elif moes:
        put(N.K_FF, moes[0].expert_dim)  # no dense layer: unused by the graph
    else:
        put(N.K_FF, 0)  # mamba2: unused, but llama.cpp's converter writes it

    if convs:
        put(N.K_L_CACHE, convs[0].kernel)
    if ssms:
        s0 = ssms[0]
        put(N.K_SSM_CONV, s0.conv_kernel)
        put(N.K_SSM_INNER, s0.d_inner)
        put(N.K_SSM_STATE, s0.state)
        put(N.K_SSM_HEADS, s0.n_heads)
        put(N.K_SSM_GROUPS, s0.n_groups)
    if arch == "lfm2moe":
        m0 = moes[0]
        put(N.K_EXPERTS, m0.n_experts)
        put(N.K_EXPERTS_USED, m0.top_k)
        put(N.K_EXPERT_FF, m0.expert_dim)
        put(N.K_DENSE_LEAD, len(dense))
        put(N.K_GATING, EXPERT_GATING_SIGMOID)

    if quant in (Quant.Q8_0, Quant.Q4_0):
        put(N.K_QUANT_VERSION, 2)  # GGML_QNT_VERSION
    meta.update(tokenizer.metadata())
    return meta

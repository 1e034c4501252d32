"""Check a planned export BEFORE writing: metadata values and the full tensor set.

The expected tensor set is re-derived from the METADATA the way llama.cpp's loader does it
(``load_arch_tensors`` of each architecture: which tensors a block needs, with which ggml shape),
independently of how the planner built the tensors from the spec. A disagreement -- a wrong FFN
width in the metadata, a tensor missing, an extra one, a wrong shape or storage type -- raises
``ExportValidationError`` naming the key or tensor, so no file llama.cpp would refuse (or, worse,
load with the wrong hyperparameters) is ever written.
"""

from __future__ import annotations

from collections.abc import Sequence

from gguf import GGMLQuantizationType, GGUFValueType

from star.export import names as N
from star.export.errors import ExportValidationError
from star.export.metadata import EXPERT_GATING_SIGMOID, Metadata
from star.export.mixture import KEEP_F32_FRAGMENTS, QuantModel, tensor_types
from star.export.quant import Quant

Shape = tuple[int, ...]
F32_NAMES = KEEP_F32_FRAGMENTS + (".bias", "ssm_a", "ssm_d")


class _HP:
    """Typed access to an arch's metadata, with llama.cpp's defaults."""

    def __init__(self, arch: str, meta: Metadata) -> None:
        self.arch = arch
        self.meta = meta

    def key(self, template: str) -> str:
        return template.format(arch=self.arch)

    def has(self, template: str) -> bool:
        return self.key(template) in self.meta

    def u32(self, template: str, default: int | None = None) -> int:
        key = self.key(template)
        if key not in self.meta:
            if default is None:
                raise ExportValidationError(key, "required key missing")
            return default
        value = self.meta[key][0]
        if isinstance(value, list) or not isinstance(value, int) or value < 0:
            raise ExportValidationError(key, f"expected a non-negative integer, got {value!r}")
        return value

    def per_layer(self, template: str, n: int, default: int | list[int]) -> list[int]:
        key = self.key(template)
        if key not in self.meta:
            return default if isinstance(default, list) else [default] * n
        value = self.meta[key][0]
        if isinstance(value, list):
            if len(value) != n:
                raise ExportValidationError(key, f"{len(value)} values, block_count is {n}")
            if not all(isinstance(v, int) and v >= 0 for v in value):
                raise ExportValidationError(key, "array values must be non-negative integers")
            return list(value)
        return [self.u32(template)] * n


def validate_metadata(arch: str, meta: Metadata, *, quant: Quant) -> None:
    """Keys present/known, GGUF value types right, values in range and mutually consistent."""
    required = {t.format(arch=arch) for t in N.REQUIRED_KEYS[arch]}
    optional = {t.format(arch=arch) for t in N.OPTIONAL_KEYS.get(arch, ())}
    for key in sorted(required - meta.keys()):
        raise ExportValidationError(key, f"required by {arch} but not in the metadata")
    templates = {t.format(arch=arch): t for t in N.KEY_TYPES}
    for key, (value, vtype) in meta.items():
        if key.startswith("tokenizer."):
            continue
        if key not in required | optional:
            raise ExportValidationError(key, f"not a key the {arch} export writes")
        template = templates[key]
        if vtype == GGUFValueType.ARRAY:
            if template not in N.ARRAY_KEYS or not isinstance(value, list):
                raise ExportValidationError(key, "must be a scalar")
        elif vtype != N.KEY_TYPES[template]:
            raise ExportValidationError(
                key, f"type {vtype.name}, llama.cpp reads {N.KEY_TYPES[template].name}"
            )
        elif vtype == GGUFValueType.FLOAT32 and not (isinstance(value, float) and value > 0):
            raise ExportValidationError(key, f"expected a positive float, got {value!r}")
        elif vtype == GGUFValueType.STRING and not isinstance(value, str):
            raise ExportValidationError(key, f"expected a string, got {value!r}")

    hp = _HP(arch, meta)
    if meta[N.K_ARCH][0] != arch:
        raise ExportValidationError(N.K_ARCH, f"{meta[N.K_ARCH][0]!r} != {arch!r}")
    if hp.u32(N.K_FILE_TYPE) != int(quant.file_type):
        raise ExportValidationError(N.K_FILE_TYPE, f"does not match the requested {quant.value}")
    for template in (N.K_EMBD, N.K_BLOCKS, N.K_VOCAB, N.K_CONTEXT):
        if hp.u32(template) == 0:
            raise ExportValidationError(hp.key(template), "must be > 0")
    _validate_tokenizer(meta, hp.u32(N.K_VOCAB))
    n_layer = hp.u32(N.K_BLOCKS)
    n_head = hp.u32(N.K_HEADS, 0)
    kv = hp.per_layer(N.K_HEADS_KV, n_layer, n_head)
    if n_head:
        for i, k in enumerate(kv):
            if k and n_head % k:
                raise ExportValidationError(
                    hp.key(N.K_HEADS_KV), f"block {i}: {k} KV heads do not divide {n_head}"
                )
        hd = hp.u32(N.K_KEY_LEN, hp.u32(N.K_EMBD) // n_head)
        if hp.u32(N.K_VALUE_LEN, hd) != hd:
            raise ExportValidationError(hp.key(N.K_VALUE_LEN), "must equal key_length")
        if hp.u32(N.K_ROPE_DIMS, hd) != hd:
            raise ExportValidationError(hp.key(N.K_ROPE_DIMS), "RoPE must cover the whole head")
    if hp.has(N.K_SSM_HEADS):
        heads, groups = hp.u32(N.K_SSM_HEADS), hp.u32(N.K_SSM_GROUPS)
        if not heads or hp.u32(N.K_SSM_INNER) % heads or heads % max(groups, 1) or not groups:
            raise ExportValidationError(
                hp.key(N.K_SSM_HEADS), "SSM heads must divide d_inner and be a multiple of groups"
            )
    if arch == "lfm2moe":
        if not 0 < hp.u32(N.K_EXPERTS_USED) <= hp.u32(N.K_EXPERTS):
            raise ExportValidationError(hp.key(N.K_EXPERTS_USED), "must be in 1..expert_count")
        if hp.u32(N.K_GATING) != EXPERT_GATING_SIGMOID:
            raise ExportValidationError(hp.key(N.K_GATING), "lfm2moe routes with sigmoid (2)")
        if hp.u32(N.K_DENSE_LEAD) >= n_layer:
            raise ExportValidationError(hp.key(N.K_DENSE_LEAD), "no MoE block left")


def _validate_tokenizer(meta: Metadata, vocab: int) -> None:
    model = meta.get(N.K_TOK_MODEL, (None,))[0]
    if model not in ("llama", "none"):
        raise ExportValidationError(N.K_TOK_MODEL, f"expected 'llama' or 'none', got {model!r}")
    if model == "llama":
        for key in (N.K_TOK_LIST, N.K_TOK_TYPES, N.K_TOK_SCORES):
            value = meta.get(key, (None,))[0]
            if not isinstance(value, list) or len(value) != vocab:
                raise ExportValidationError(key, f"needs exactly vocab_size = {vocab} entries")
        tokens = meta[N.K_TOK_LIST][0]
        assert isinstance(tokens, list)
        if len(set(tokens)) != len(tokens):
            raise ExportValidationError(N.K_TOK_LIST, "tokens must be unique")
        for key in (N.K_TOK_BOS, N.K_TOK_EOS, N.K_TOK_UNK):
            token_id = meta.get(key, (None,))[0]
            if not isinstance(token_id, int) or not 0 <= token_id < vocab:
                raise ExportValidationError(key, "token id missing or out of range")


def expected_tensors(arch: str, meta: Metadata) -> tuple[dict[str, Shape], set[str]]:
    """(name -> ggml shape) of every tensor llama.cpp's loader looks for, and the optional ones.

    Mirrors ``load_arch_tensors`` of src/models/<arch>.cpp in the pinned llama.cpp.
    """
    hp = _HP(arch, meta)
    d = hp.u32(N.K_EMBD)
    n_layer = hp.u32(N.K_BLOCKS)
    vocab = hp.u32(N.K_VOCAB)
    n_head = hp.u32(N.K_HEADS, 0)
    kv = hp.per_layer(N.K_HEADS_KV, n_layer, n_head)
    hd = hp.u32(N.K_KEY_LEN, d // n_head if n_head else 0)
    ff = hp.per_layer(N.K_FF, n_layer, 0)
    exp: dict[str, Shape] = {}
    final_norm = "token_embd_norm.weight" if arch in ("lfm2", "lfm2moe") else "output_norm.weight"
    exp["token_embd.weight"] = (d, vocab)
    exp[final_norm] = (d,)
    exp[N.OUTPUT] = (d, vocab)
    optional = {N.OUTPUT}

    def blk(i: int, rest: str, shape: Shape) -> None:
        exp[f"blk.{i}.{rest}"] = shape

    def attention(i: int, q_width: int, qk_norm: bool) -> None:
        blk(i, "attn_q.weight", (d, q_width))
        blk(i, "attn_k.weight", (d, hd * kv[i]))
        blk(i, "attn_v.weight", (d, hd * kv[i]))
        blk(i, "attn_output.weight", (q_width, d))
        if qk_norm:
            blk(i, "attn_q_norm.weight", (hd,))
            blk(i, "attn_k_norm.weight", (hd,))

    def swiglu(i: int, width: int) -> None:
        blk(i, "ffn_norm.weight", (d,))
        blk(i, "ffn_gate.weight", (d, width))
        blk(i, "ffn_up.weight", (d, width))
        blk(i, "ffn_down.weight", (width, d))

    def ssm(i: int) -> None:
        conv, inner = hp.u32(N.K_SSM_CONV), hp.u32(N.K_SSM_INNER)
        state, heads, groups = hp.u32(N.K_SSM_STATE), hp.u32(N.K_SSM_HEADS), hp.u32(N.K_SSM_GROUPS)
        conv_dim = inner + 2 * groups * state
        blk(i, "ssm_in.weight", (d, inner + conv_dim + heads))
        blk(i, "ssm_conv1d.weight", (conv, conv_dim))
        blk(i, "ssm_conv1d.bias", (conv_dim,))
        blk(i, "ssm_dt.bias", (heads,))
        blk(i, "ssm_a", (1, heads))
        blk(i, "ssm_d", (1, heads))
        blk(i, "ssm_norm.weight", (inner // groups, groups))
        blk(i, "ssm_out.weight", (inner, d))

    for i in range(n_layer):
        blk(i, "attn_norm.weight", (d,))
        if arch in ("lfm2", "lfm2moe"):
            if hd * n_head != d:
                raise ExportValidationError(hp.key(N.K_KEY_LEN), f"{arch}: heads * key_length != d")
            lead = hp.u32(N.K_DENSE_LEAD, 0) if arch == "lfm2moe" else n_layer
            if i < lead:
                swiglu(i, ff[i])
            else:
                e, e_ff = hp.u32(N.K_EXPERTS), hp.u32(N.K_EXPERT_FF)
                blk(i, "ffn_norm.weight", (d,))
                blk(i, "ffn_gate_inp.weight", (d, e))
                blk(i, "ffn_gate_exps.weight", (d, e_ff, e))
                blk(i, "ffn_up_exps.weight", (d, e_ff, e))
                blk(i, "ffn_down_exps.weight", (e_ff, d, e))
                blk(i, "exp_probs_b.bias", (e,))
            if kv[i]:
                attention(i, d, qk_norm=True)
            else:
                l_cache = hp.u32(N.K_L_CACHE)
                blk(i, "shortconv.conv.weight", (l_cache, d))
                blk(i, "shortconv.in_proj.weight", (d, 3 * d))
                blk(i, "shortconv.out_proj.weight", (d, d))
        elif arch in ("qwen3", "llama"):
            attention(i, hd * n_head, qk_norm=arch == "qwen3")
            swiglu(i, ff[i])
        elif arch == "mamba2":
            ssm(i)
        elif arch == "granitehybrid":
            if hp.u32(N.K_SSM_INNER) != 2 * d:
                raise ExportValidationError(hp.key(N.K_SSM_INNER), "granitehybrid needs 2 * d")
            if kv[i] == 0:
                ssm(i)
            else:
                attention(i, hd * n_head, qk_norm=False)
            swiglu(i, ff[i])
        elif arch == "nemotron_h":
            if kv[i] == 0 and ff[i] == 0:
                ssm(i)
            elif ff[i] == 0:
                attention(i, hd * n_head, qk_norm=False)
            else:
                blk(i, "ffn_up.weight", (d, ff[i]))
                blk(i, "ffn_down.weight", (ff[i], d))
        else:
            raise ExportValidationError(N.K_ARCH, f"unknown architecture {arch!r}")
    if arch in ("lfm2", "lfm2moe", "qwen3", "llama", "granitehybrid"):
        for i in range(n_layer):
            needs_ff = arch != "lfm2moe" or i < hp.u32(N.K_DENSE_LEAD, 0)
            if needs_ff and ff[i] == 0:
                raise ExportValidationError(hp.key(N.K_FF), f"block {i} has FFN width 0")
    return exp, optional


def validate_tensors(
    arch: str,
    meta: Metadata,
    tensors: Sequence[tuple[str, Shape, GGMLQuantizationType]],
    *,
    quant: Quant,
) -> None:
    """Exact tensor set: names, ggml shapes and storage types, against the metadata.

    Types must be those ``star.export.mixture`` gives the whole set in ``quant`` (llama-quantize's
    mixture for quantized types); ``UnsupportedQuant`` where the tool would abort.
    """
    expected, optional = expected_tensors(arch, meta)
    seen: set[str] = set()
    for name, shape, _ in tensors:
        if name in seen:
            raise ExportValidationError(name, "tensor written twice")
        seen.add(name)
        if name not in expected:
            raise ExportValidationError(
                name,
                f"{arch} has no such tensor for this metadata (llama.cpp rejects extra tensors)",
            )
        if tuple(shape) != expected[name]:
            raise ExportValidationError(
                name, f"ggml shape {tuple(shape)} but the metadata requires {expected[name]}"
            )
    for name in sorted(expected.keys() - seen - optional):
        raise ExportValidationError(name, f"required by {arch} but not planned")
    model = QuantModel.from_metadata(arch, meta)
    rule = tensor_types([(name, tuple(shape)) for name, shape, _ in tensors], quant, model)
    for name, _, qtype in tensors:
        if qtype != rule[name]:
            raise ExportValidationError(
                name, f"stored as {qtype.name}, the {quant.value} rule says {rule[name].name}"
            )
        if any(f in name for f in F32_NAMES) and qtype != GGMLQuantizationType.F32:
            raise ExportValidationError(name, "must be stored as F32")

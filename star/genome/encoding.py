"""The integer-vector encoding of a genome: what the search mutates.

A genome is one flat vector of integers in three resolutions, laid out as

    [ model | operator genomes 0..MAX_OPERATORS-1 | backbone: op id per slot, share per slot ]

- **model genes** (global): width, vocabulary and the fixed numerics of the family;
- **operator genomes**: token-mixer class, channel-mixer class, norm, and the *featurizer* genes of
  that operator (heads, KV groups, head dim, kernel, state, window, experts, widths, ...);
- **backbone**: one operator id per layer slot (0 = empty slot, k = operator genome k-1) and a
  sharing group per slot (0 = none; layers of one group with the same operator share the token
  mixer's weights).

Every gene has documented integer bounds and a unit (the decoded value is ``gene * unit``), so a
mutation by +-1 is one meaningful step (64 channels of width, one head, ...). The readable form
(YAML) is produced from and parsed into this vector; see ``star.genome.genome``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from star.genome.spec import ChannelMixer, Norm, Routing, TokenMixer

MAX_LAYERS = 64
MAX_OPERATORS = 8
ENCODING_VERSION = 1

TOKEN_MIXERS: tuple[TokenMixer, ...] = (
    TokenMixer.ATTENTION,
    TokenMixer.SWA,
    TokenMixer.SHORTCONV,
    TokenMixer.LINEAR_ATTENTION,
    TokenMixer.SSM,
)
CHANNEL_MIXERS: tuple[ChannelMixer, ...] = (
    ChannelMixer.SWIGLU,
    ChannelMixer.MLP,
    ChannelMixer.MOE,
    ChannelMixer.NONE,
)
NORMS: tuple[Norm, ...] = (Norm.RMSNORM, Norm.LAYERNORM)
ROUTINGS: tuple[Routing, ...] = (Routing.SOFTMAX, Routing.SIGMOID)


@dataclass(frozen=True)
class Gene:
    """One integer gene: stored value in [low, high]; decoded value = stored * unit.

    ``default`` is the stored value used for inactive genes in the canonical form. ``frozen`` genes
    describe the model family (vocabulary, numerics) and are not mutated by default.
    """

    name: str
    low: int
    high: int
    default: int
    unit: int = 1
    frozen: bool = False
    doc: str = ""


MODEL_GENES: tuple[Gene, ...] = (
    Gene("d_model", 1, 256, 16, unit=64, doc="residual width, in units of 64 (64..16384)"),
    Gene("vocab_size", 2, 1 << 18, 65536, frozen=True, doc="vocabulary size (tokens)"),
    Gene("tie_embeddings", 0, 1, 1, frozen=True, doc="1 = output head tied to the embedding"),
    Gene("rope_theta", 1, 10**9, 10**6, frozen=True, doc="RoPE base frequency"),
    Gene("norm_eps_exp", 1, 12, 5, frozen=True, doc="norm epsilon = 10**-value"),
    Gene("context_length", 1, 1024, 128, unit=1024, frozen=True,
         doc="trained context length, in units of 1024 tokens"),
)

# Featurizer genes of one operator genome. Which of them are active depends on the classes.
FEATURIZER_GENES: tuple[Gene, ...] = (
    Gene("heads", 1, 256, 16, doc="attention / linear-attention / SSM heads"),
    Gene("kv_heads", 1, 256, 8, doc="KV heads (GQA groups); must divide heads"),
    Gene("head_dim", 1, 64, 8, unit=8, doc="per-head width, units of 8 (8..512)"),
    Gene("qk_norm", 0, 1, 1, doc="1 = per-head RMSNorm on q and k before RoPE"),
    Gene("window", 1, 2048, 64, unit=64, doc="sliding window, units of 64 tokens"),
    Gene("conv_kernel", 2, 8, 3, doc="causal conv kernel (short conv, SSM conv)"),
    Gene("ssm_state", 1, 64, 16, unit=8, doc="SSM state size N per group, units of 8"),
    Gene("ssm_groups", 1, 16, 1, doc="SSM B/C groups; must divide heads"),
    Gene("ffn_dim", 1, 1024, 64, unit=64, doc="FFN width (expert width for MoE), units of 64"),
    Gene("experts", 2, 256, 8, doc="MoE experts"),
    Gene("top_k", 1, 16, 2, doc="MoE experts used per token; <= experts"),
    Gene("routing", 0, len(ROUTINGS) - 1, 0, doc="MoE routing: 0 softmax, 1 sigmoid"),
    Gene("expert_bias", 0, 1, 0, doc="1 = selection-only expert bias (sigmoid routing only)"),
)

OPERATOR_CLASS_GENES: tuple[Gene, ...] = (
    Gene("token_mixer", 0, len(TOKEN_MIXERS) - 1, 0,
         doc="0 attention, 1 swa, 2 shortconv, 3 linear_attention, 4 ssm"),
    Gene("channel_mixer", 0, len(CHANNEL_MIXERS) - 1, 0, doc="0 swiglu, 1 mlp, 2 moe, 3 none"),
    Gene("norm", 0, len(NORMS) - 1, 0, doc="0 rmsnorm, 1 layernorm"),
)

OPERATOR_GENES: tuple[Gene, ...] = OPERATOR_CLASS_GENES + FEATURIZER_GENES
LAYER_OP_GENE = Gene("op", 0, MAX_OPERATORS, 0, doc="operator id + 1 per slot; 0 = empty")
LAYER_SHARE_GENE = Gene("share", 0, MAX_LAYERS // 2, 0, doc="weight-sharing group; 0 = none")

# Which featurizer genes each class reads (the rest are inactive and canonicalised to defaults).
MIXER_FEATURES: dict[TokenMixer, tuple[str, ...]] = {
    TokenMixer.ATTENTION: ("heads", "kv_heads", "head_dim", "qk_norm"),
    TokenMixer.SWA: ("heads", "kv_heads", "head_dim", "qk_norm", "window"),
    TokenMixer.SHORTCONV: ("conv_kernel",),
    TokenMixer.LINEAR_ATTENTION: ("heads", "head_dim"),
    TokenMixer.SSM: ("heads", "head_dim", "ssm_state", "ssm_groups", "conv_kernel"),
}
CHANNEL_FEATURES: dict[ChannelMixer, tuple[str, ...]] = {
    ChannelMixer.SWIGLU: ("ffn_dim",),
    ChannelMixer.MLP: ("ffn_dim",),
    ChannelMixer.MOE: ("ffn_dim", "experts", "top_k", "routing", "expert_bias"),
    ChannelMixer.NONE: (),
}

N_MODEL = len(MODEL_GENES)
N_OPERATOR = len(OPERATOR_GENES)
OPERATORS_OFFSET = N_MODEL
BACKBONE_OFFSET = OPERATORS_OFFSET + MAX_OPERATORS * N_OPERATOR
SHARE_OFFSET = BACKBONE_OFFSET + MAX_LAYERS
VECTOR_LENGTH = SHARE_OFFSET + MAX_LAYERS


@dataclass(frozen=True)
class GeneSlot:
    """Where a gene lives in the vector, with its path in the structured form."""

    index: int
    gene: Gene
    path: str


def _layout() -> tuple[GeneSlot, ...]:
    slots: list[GeneSlot] = []
    for g in MODEL_GENES:
        slots.append(GeneSlot(len(slots), g, f"model.{g.name}"))
    for k in range(MAX_OPERATORS):
        for g in OPERATOR_CLASS_GENES:
            slots.append(GeneSlot(len(slots), g, f"operators[{k}].{g.name}"))
        for g in FEATURIZER_GENES:
            slots.append(GeneSlot(len(slots), g, f"operators[{k}].featurizer.{g.name}"))
    for i in range(MAX_LAYERS):
        slots.append(GeneSlot(len(slots), LAYER_OP_GENE, f"backbone.layers[{i}]"))
    for i in range(MAX_LAYERS):
        slots.append(GeneSlot(len(slots), LAYER_SHARE_GENE, f"backbone.share[{i}]"))
    assert len(slots) == VECTOR_LENGTH
    return tuple(slots)


LAYOUT: tuple[GeneSlot, ...] = _layout()
LOWER: tuple[int, ...] = tuple(s.gene.low for s in LAYOUT)
UPPER: tuple[int, ...] = tuple(s.gene.high for s in LAYOUT)


def model_index(name: str) -> int:
    return [g.name for g in MODEL_GENES].index(name)


def operator_index(k: int, name: str) -> int:
    return OPERATORS_OFFSET + k * N_OPERATOR + [g.name for g in OPERATOR_GENES].index(name)


@dataclass
class OperatorGenes:
    """Decoded operator genome: class genes and featurizer genes (stored, not unit-scaled)."""

    token_mixer: int = 0
    channel_mixer: int = 0
    norm: int = 0
    featurizer: dict[str, int] = field(
        default_factory=lambda: {g.name: g.default for g in FEATURIZER_GENES}
    )

    @property
    def mixer(self) -> TokenMixer:
        return TOKEN_MIXERS[self.token_mixer]

    @property
    def channel(self) -> ChannelMixer:
        return CHANNEL_MIXERS[self.channel_mixer]

    def active_features(self) -> tuple[str, ...]:
        names = MIXER_FEATURES[self.mixer] + CHANNEL_FEATURES[self.channel]
        return tuple(g.name for g in FEATURIZER_GENES if g.name in names)

    def key(self) -> tuple[int, ...]:
        return (self.token_mixer, self.channel_mixer, self.norm) + tuple(
            self.featurizer[g.name] for g in FEATURIZER_GENES
        )


@dataclass
class GenomeData:
    """Mutable structured view of a genome vector; the working form of repair and variation.

    ``layers`` holds 0-based operator indices of the used slots, in order (a -1 marks an empty
    slot when decoding a non-canonical vector); ``share`` the sharing group per layer.
    """

    model: dict[str, int]
    operators: list[OperatorGenes]
    layers: list[int]
    share: list[int]

    @classmethod
    def decode(cls, vector: list[int] | tuple[int, ...]) -> GenomeData:
        v = list(vector)
        if len(v) != VECTOR_LENGTH:
            raise ValueError(f"genome vector has {len(v)} genes, expected {VECTOR_LENGTH}")
        model = {g.name: int(v[i]) for i, g in enumerate(MODEL_GENES)}
        operators: list[OperatorGenes] = []
        for k in range(MAX_OPERATORS):
            base = OPERATORS_OFFSET + k * N_OPERATOR
            values = v[base : base + N_OPERATOR]
            op = OperatorGenes(
                token_mixer=int(values[0]),
                channel_mixer=int(values[1]),
                norm=int(values[2]),
                featurizer={g.name: int(values[3 + j]) for j, g in enumerate(FEATURIZER_GENES)},
            )
            operators.append(op)
        layers = [int(x) - 1 for x in v[BACKBONE_OFFSET:SHARE_OFFSET]]
        share = [int(x) for x in v[SHARE_OFFSET:VECTOR_LENGTH]]
        # drop trailing empty slots: they carry no information
        while layers and layers[-1] == -1:
            layers.pop()
        share = share[: len(layers)] if layers else []
        return cls(model=model, operators=operators, layers=layers, share=share)

    def encode(self) -> tuple[int, ...]:
        if len(self.layers) > MAX_LAYERS:
            raise ValueError(f"{len(self.layers)} layers exceed MAX_LAYERS={MAX_LAYERS}")
        v: list[int] = [self.model[g.name] for g in MODEL_GENES]
        ops = list(self.operators) + [
            OperatorGenes() for _ in range(MAX_OPERATORS - len(self.operators))
        ]
        for op in ops[:MAX_OPERATORS]:
            v.extend(op.key())
        v.extend([x + 1 for x in self.layers] + [0] * (MAX_LAYERS - len(self.layers)))
        v.extend(list(self.share) + [0] * (MAX_LAYERS - len(self.share)))
        return tuple(v)

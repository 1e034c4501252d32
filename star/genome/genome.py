"""The Genome: an immutable canonical integer vector, its readable form and its spec.

Readable form (what people write in ``genomes/*.yaml``)::

    name: lfm2-350m
    model: {d_model: 1024, vocab_size: 65536, tie_embeddings: true, rope_theta: 1000000,
            norm_eps: 1.0e-05, context_length: 128000}
    operators:                       # operator genomes, by a name of your choice
      conv:  {token_mixer: shortconv, channel_mixer: swiglu, norm: rmsnorm,
              featurizer: {conv_kernel: 3, ffn_dim: 4608}}
      attn:  {token_mixer: attention, channel_mixer: swiglu, norm: rmsnorm,
              featurizer: {heads: 16, kv_heads: 8, head_dim: 64, qk_norm: true, ffn_dim: 4608}}
    backbone:
      layers: [conv, conv, attn, ...]   # one operator per layer
      share: [0, 0, 0, ...]             # optional weight-sharing groups (0 = none)

Operator names are labels: the genome (and its id) is the canonical vector, so writing a genome
back gives derived names such as ``shortconv_swiglu``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from star.genome import identity
from star.genome.encoding import (
    CHANNEL_MIXERS,
    FEATURIZER_GENES,
    MAX_LAYERS,
    MAX_OPERATORS,
    MODEL_GENES,
    NORMS,
    ROUTINGS,
    TOKEN_MIXERS,
    GenomeData,
    OperatorGenes,
)
from star.genome.repair import canonicalize
from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    ChannelMixer,
    ChannelMixerSpec,
    FFNSpec,
    LayerSpec,
    LinearAttentionSpec,
    MoESpec,
    ShortConvSpec,
    SSMSpec,
    TokenMixer,
    TokenMixerSpec,
)
from star.genome.validate import InvalidGenome, Problem, check_bounds, check_structure

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~20x faster when present
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_MODEL_UNITS = {g.name: g.unit for g in MODEL_GENES}
_FEATURE_GENES = {g.name: g for g in FEATURIZER_GENES}
_BOOL_FEATURES = {"qk_norm", "expert_bias"}


@dataclass(frozen=True)
class Genome:
    """A canonical, valid genome; build with ``from_vector``, ``from_dict`` or ``load_genome``."""

    genes: tuple[int, ...]
    name: str = ""

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_vector(cls, vector: list[int] | tuple[int, ...], name: str = "") -> Genome:
        """Validate and canonicalise a vector; raises InvalidGenome naming every problem."""
        vec = [int(x) for x in vector]
        problems = check_bounds(vec)
        if not problems:
            problems = check_structure(GenomeData.decode(vec))
        if problems:
            raise InvalidGenome(problems)
        return cls(canonicalize(GenomeData.decode(vec)).encode(), name)

    @classmethod
    def from_dict(cls, doc: Any) -> Genome:
        data, names, problems = _parse(doc)
        if not problems and data is not None:
            if len(data.layers) > MAX_LAYERS:
                problems = [Problem("backbone.layers", f"at most {MAX_LAYERS} layers")]
            else:
                problems = [_named(p, names) for p in check_bounds(data.encode())]
                problems = problems or check_structure(data, names)
        if problems or data is None:
            raise InvalidGenome(problems)
        name = doc.get("name", "") if isinstance(doc, dict) else ""
        return cls(canonicalize(data).encode(), str(name or ""))

    # ---- views ------------------------------------------------------------------------------
    @property
    def data(self) -> GenomeData:
        return GenomeData.decode(self.genes)

    @property
    def genome_id(self) -> str:
        """sha256 of the canonical JSON of the vector (names are not part of identity)."""
        return identity.genome_id(self.genes)

    def operator_names(self) -> list[str]:
        names: list[str] = []
        for op in self.data.operators:
            base = f"{op.mixer.value}_{op.channel.value}"
            name, n = base, 2
            while name in names:
                name, n = f"{base}_{n}", n + 1
            names.append(name)
        return names

    def to_dict(self) -> dict[str, Any]:
        data = self.data
        names = self.operator_names()
        model: dict[str, Any] = {}
        for g in MODEL_GENES:
            value = data.model[g.name]
            if g.name == "norm_eps_exp":
                model["norm_eps"] = float(f"1e-{value}")
            elif g.name == "tie_embeddings":
                model[g.name] = bool(value)
            else:
                model[g.name] = value * g.unit
        operators: dict[str, Any] = {}
        n_used = max(data.layers) + 1  # canonical: operators numbered by first use
        for name, op in zip(names[:n_used], data.operators[:n_used], strict=True):
            featurizer: dict[str, Any] = {}
            for fname in op.active_features():
                gene = _FEATURE_GENES[fname]
                value = op.featurizer[fname]
                if fname in _BOOL_FEATURES:
                    featurizer[fname] = bool(value)
                elif fname == "routing":
                    featurizer[fname] = ROUTINGS[value].value
                else:
                    featurizer[fname] = value * gene.unit
            operators[name] = {
                "token_mixer": op.mixer.value,
                "channel_mixer": op.channel.value,
                "norm": NORMS[op.norm].value,
                "featurizer": featurizer,
            }
        doc: dict[str, Any] = {}
        if self.name:
            doc["name"] = self.name
        doc["model"] = model
        doc["operators"] = operators
        doc["backbone"] = {"layers": [names[k] for k in data.layers]}
        if any(data.share):
            doc["backbone"]["share"] = list(data.share)
        return doc

    def to_yaml(self) -> str:
        return yaml.dump(self.to_dict(), Dumper=_DUMPER, sort_keys=False,
                         default_flow_style=None, width=100)

    def to_spec(self) -> ArchSpec:
        """The typed architecture at the genome's own (deployment) scale."""
        data = self.data
        m = data.model
        layers: list[LayerSpec] = []
        for i, (k, group) in enumerate(zip(data.layers, data.share, strict=True)):
            op = data.operators[k]
            layers.append(
                LayerSpec(
                    index=i,
                    operator=k,
                    mixer=_mixer_spec(op),
                    channel=_channel_spec(op),
                    norm=NORMS[op.norm],
                    share_group=group,
                )
            )
        return ArchSpec(
            name=self.name or self.genome_id[:12],
            d_model=m["d_model"] * _MODEL_UNITS["d_model"],
            vocab_size=m["vocab_size"],
            tie_embeddings=bool(m["tie_embeddings"]),
            rope_theta=float(m["rope_theta"]),
            norm_eps=float(f"1e-{m['norm_eps_exp']}"),
            context_length=m["context_length"] * _MODEL_UNITS["context_length"],
            layers=tuple(layers),
        )


def _named(problem: Problem, names: list[str]) -> Problem:
    """Rewrite ``operators[k]`` in a path to the operator's name in the user's file."""
    for k, name in enumerate(names):
        prefix = f"operators[{k}]"
        if problem.path.startswith(prefix):
            return Problem(f"operators.{name}" + problem.path[len(prefix):], problem.message)
    return problem


def _mixer_spec(op: OperatorGenes) -> TokenMixerSpec:
    f = op.featurizer
    hd = f["head_dim"] * _FEATURE_GENES["head_dim"].unit
    if op.mixer in (TokenMixer.ATTENTION, TokenMixer.SWA):
        window = f["window"] * _FEATURE_GENES["window"].unit if op.mixer == TokenMixer.SWA else 0
        return AttentionSpec(f["heads"], f["kv_heads"], hd, bool(f["qk_norm"]), window, op.mixer)
    if op.mixer == TokenMixer.SHORTCONV:
        return ShortConvSpec(kernel=f["conv_kernel"])
    if op.mixer == TokenMixer.LINEAR_ATTENTION:
        return LinearAttentionSpec(n_heads=f["heads"], head_dim=hd)
    return SSMSpec(
        n_heads=f["heads"],
        head_dim=hd,
        state=f["ssm_state"] * _FEATURE_GENES["ssm_state"].unit,
        n_groups=f["ssm_groups"],
        conv_kernel=f["conv_kernel"],
    )


def _channel_spec(op: OperatorGenes) -> ChannelMixerSpec | None:
    f = op.featurizer
    width = f["ffn_dim"] * _FEATURE_GENES["ffn_dim"].unit
    if op.channel == ChannelMixer.NONE:
        return None
    if op.channel == ChannelMixer.MOE:
        return MoESpec(f["experts"], f["top_k"], width, ROUTINGS[f["routing"]],
                       bool(f["expert_bias"]))
    return FFNSpec(ffn_dim=width, kind=op.channel)


# ---- parsing the readable form ------------------------------------------------------------
def _enum_index(value: Any, options: tuple[Any, ...], path: str,
                problems: list[Problem]) -> int:
    names = [o.value for o in options]
    if value not in names:
        problems.append(Problem(path, f"unknown value {value!r}; expected one of {names}"))
        return 0
    return names.index(value)


def _scaled(value: Any, unit: int, path: str, problems: list[Problem], *,
            as_bool: bool = False) -> int:
    if as_bool:
        if not isinstance(value, bool):
            problems.append(Problem(path, f"must be true or false, got {value!r}"))
            return 0
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(Problem(path, f"must be an integer, got {value!r}"))
        return 0
    if value % unit:
        problems.append(Problem(path, f"{value} must be a multiple of {unit}"))
        return 0
    return value // unit


def _parse(doc: Any) -> tuple[GenomeData | None, list[str], list[Problem]]:
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        return None, [], [Problem("genome", "must be a mapping with model, operators, backbone")]
    unknown = set(doc) - {"name", "description", "model", "operators", "backbone"}
    for key in sorted(unknown):
        problems.append(Problem(key, "unknown field"))
    model_doc = doc.get("model")
    ops_doc = doc.get("operators")
    bb_doc = doc.get("backbone")
    for key, value in (("model", model_doc), ("operators", ops_doc), ("backbone", bb_doc)):
        if not isinstance(value, dict):
            problems.append(Problem(key, "required mapping is missing"))
    if problems:
        return None, [], problems
    assert isinstance(model_doc, dict) and isinstance(ops_doc, dict) and isinstance(bb_doc, dict)

    model: dict[str, int] = {}
    for g in MODEL_GENES:
        if g.name == "norm_eps_exp":
            eps = model_doc.get("norm_eps", 1e-5)
            exp = -math.log10(eps) if isinstance(eps, (int, float)) and eps > 0 else -1
            if abs(exp - round(exp)) > 1e-9 or exp < 0:
                problems.append(Problem("model.norm_eps", f"{eps!r} must be a power of ten"))
            model[g.name] = int(round(exp))
            continue
        path = f"model.{g.name}"
        if g.name not in model_doc:
            if g.name == "d_model":
                problems.append(Problem(path, "required"))
            model[g.name] = g.default
            continue
        model[g.name] = _scaled(model_doc[g.name], g.unit, path, problems,
                                as_bool=g.name == "tie_embeddings")
    for key in sorted(set(model_doc) - {g.name for g in MODEL_GENES} - {"norm_eps"}):
        problems.append(Problem(f"model.{key}", "unknown field"))

    if len(ops_doc) > MAX_OPERATORS:
        problems.append(Problem("operators", f"at most {MAX_OPERATORS} operator genomes"))
    names = [str(n) for n in ops_doc]
    operators: list[OperatorGenes] = []
    for name, op_doc in ops_doc.items():
        path = f"operators.{name}"
        if not isinstance(op_doc, dict):
            problems.append(Problem(path, "must be a mapping"))
            operators.append(OperatorGenes())
            continue
        op = OperatorGenes()
        n_enum = len(problems)
        op.token_mixer = _enum_index(op_doc.get("token_mixer"), TOKEN_MIXERS,
                                     f"{path}.token_mixer", problems)
        op.channel_mixer = _enum_index(op_doc.get("channel_mixer", "swiglu"), CHANNEL_MIXERS,
                                       f"{path}.channel_mixer", problems)
        op.norm = _enum_index(op_doc.get("norm", "rmsnorm"), NORMS, f"{path}.norm", problems)
        enum_failed = len(problems) > n_enum
        for key in sorted(set(op_doc) - {"token_mixer", "channel_mixer", "norm", "featurizer"}):
            problems.append(Problem(f"{path}.{key}", "unknown field"))
        feat_doc = op_doc.get("featurizer", {})
        if not isinstance(feat_doc, dict):
            problems.append(Problem(f"{path}.featurizer", "must be a mapping"))
            feat_doc = {}
        if enum_failed:  # unknown class: featurizer cannot be checked
            operators.append(op)
            continue
        active = set(op.active_features())
        for key in op.active_features():
            if key not in feat_doc:
                problems.append(Problem(f"{path}.featurizer.{key}",
                                        f"required by {op.mixer.value} + {op.channel.value}"))
        for key, value in feat_doc.items():
            fpath = f"{path}.featurizer.{key}"
            if key not in _FEATURE_GENES:
                problems.append(Problem(fpath, "unknown field"))
                continue
            if key not in active:
                problems.append(
                    Problem(fpath, f"not used by {op.mixer.value} + {op.channel.value}")
                )
                continue
            if key == "routing":
                op.featurizer[key] = _enum_index(value, ROUTINGS, fpath, problems)
            else:
                op.featurizer[key] = _scaled(value, _FEATURE_GENES[key].unit, fpath, problems,
                                             as_bool=key in _BOOL_FEATURES)
        operators.append(op)

    layers_doc = bb_doc.get("layers")
    share_doc = bb_doc.get("share")
    for key in sorted(set(bb_doc) - {"layers", "share"}):
        problems.append(Problem(f"backbone.{key}", "unknown field"))
    layers: list[int] = []
    if not isinstance(layers_doc, list) or not layers_doc:
        problems.append(Problem("backbone.layers", "must be a non-empty list of operator names"))
    else:
        for i, ref in enumerate(layers_doc):
            if ref not in ops_doc:
                problems.append(
                    Problem(f"backbone.layers[{i}]", f"unknown operator {ref!r}; "
                            f"defined: {names}")
                )
                layers.append(0)
            else:
                layers.append(names.index(str(ref)))
    share = [0] * len(layers)
    if share_doc is not None:
        if not isinstance(share_doc, list) or len(share_doc) != len(layers):
            problems.append(Problem("backbone.share", "must list one group per layer"))
        else:
            for i, s in enumerate(share_doc):
                share[i] = _scaled(s, 1, f"backbone.share[{i}]", problems)
    if problems:
        return None, names, problems
    return GenomeData(model=model, operators=operators, layers=layers, share=share), names, []


def load_genome(path: str | Path) -> Genome:
    """Read a genome YAML file; raises InvalidGenome (with paths) or OSError."""
    return parse_genome_yaml(Path(path).read_text(), source=str(path))


def parse_genome_yaml(text: str, source: str = "genome") -> Genome:
    """Parse the readable form from a string; raises InvalidGenome (with paths)."""
    try:
        doc = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise InvalidGenome([Problem(source, f"not valid YAML: {exc}")]) from None
    return Genome.from_dict(doc)

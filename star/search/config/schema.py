"""``SearchConfig`` and its parts: the ``search:`` section's schema and the checks decidable from
the document alone (names, ranges, impossible budgets, contexts, stages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from star.cost import Quant
from star.genome import Genome, Scale, load_genome, scale_spec
from star.genome.spec import ArchSpec, ChannelMixer, TokenMixer
from star.proxy import ProxyConfig
from star.search.objectives import MEASURED, Bound, MetricKey, parse_metric


class ScaleSettings(BaseModel):
    """``star.genome.Scale`` as config: a genome at another width (same architecture)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    d_model: int = Field(ge=8, description="residual width of the scaled genome")
    head_dim: int | None = Field(
        default=None, ge=2,
        description="per-head width of attention, linear-attention and SSM heads (None:"
        " the genome's)")
    vocab_size: int | None = Field(
        default=None, ge=4, description="vocabulary size (None: the genome's)")
    max_experts: int | None = Field(
        default=None, ge=1,
        description="cap on MoE experts; top-k is scaled along (None: the genome's)")
    context_length: int | None = Field(
        default=None, ge=16,
        description="context length written into the model (None: the genome's)")
    multiple: int = Field(
        default=8, ge=1, description="FFN widths are rounded to a multiple of this")

    def to_scale(self) -> Scale:
        return Scale(**self.model_dump())


TINY_SETTINGS = ScaleSettings(d_model=64, head_dim=16, vocab_size=256, max_experts=4,
                              context_length=2048)


class Budget(BaseModel):
    """A constraint on a metric: ``value <= max`` and/or ``value >= min`` (same units as the
    metric; see objectives.py). A minimum keeps a study size-matched, e.g. ``{metric: params,
    min: 300, max: 400}`` keeps every candidate within a baseline's size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(
        description="metric[@context][/device_class], as in objectives (e.g. "
        "peak_rss_mb@32768/android:s24)")
    max: float | None = Field(
        default=None,
        description="upper bound in the metric's unit (ms, MiB, millions of parameters, bytes)")
    min: float | None = Field(
        default=None, description="lower bound in the metric's unit (e.g. a minimum size)")

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        parse_metric(v)
        return v

    @model_validator(mode="after")
    def _one_side(self) -> Budget:
        if self.max is None and self.min is None:
            raise ValueError("give max, min or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    @property
    def key(self) -> MetricKey:
        return parse_metric(self.metric)

    def bounds(self) -> list[Bound]:
        out = [Bound(self.key, self.max)] if self.max is not None else []
        return out + ([Bound(self.key, self.min, lower=True)] if self.min is not None else [])


class Baseline(BaseModel):
    """A genome every candidate is compared with (the transformer a lab would otherwise ship):
    exported, measured on every device class, setting and context, and proxy-trained exactly
    like a candidate, but never given to NSGA-II, so never bred or mutated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    genome: Path = Field(
        description="genome YAML file of the baseline (relative to the config file)")
    label: str | None = Field(
        default=None, min_length=1, max_length=128,
        description="name shown in reports (default: the file's stem)")

    @model_validator(mode="before")
    @classmethod
    def _path_alone(cls, data: Any) -> Any:
        return {"genome": data} if isinstance(data, str | Path) else data

    @property
    def name(self) -> str:
        return self.label or self.genome.stem


class Staging(BaseModel):
    """Long contexts within a budget: every candidate is measured at the ``screen`` contexts;
    only those near the frontier (and every baseline) are then measured at the ``confirm``
    contexts. Until a candidate is confirmed, its long-context figures are estimated from its
    screening figures (``star.search.stages``); the frontier shows confirmed figures only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    screen: list[int] | None = Field(
        default=None,
        description="contexts every candidate is measured at (default: contexts minus "
        "confirm)")
    confirm: list[int] = Field(
        min_length=1, description="long contexts measured only for the chosen candidates and every "
        "baseline")
    # confirmed: this generation's candidates in the first ``confirm_rank`` non-dominated fronts
    # of the run so far (screening figures, long-context estimates) ...
    confirm_rank: int = Field(
        default=1, ge=1, le=64,
        description="confirm this generation's candidates in the first N non-dominated "
        "fronts of the run so far")
    # ... at most this many per generation (None: no cap)
    confirm_max: int | None = Field(
        default=None, ge=1,
        description="confirm at most this many candidates per generation (None: no cap)")
    # repetitions at the confirm contexts (None: ``repetitions``): a 32K prefill costs minutes
    confirm_repetitions: int | None = Field(
        default=None, ge=1, description="repetitions at the confirm contexts (None: repetitions)")


class OperatorSettings(BaseModel):
    """What the pymoo operators may produce, and how often they vary a genome."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampling: Literal["genome"] = Field(
        default="genome", description="initial population: seeds, their mutants and random genomes")
    crossover: Literal["layerwise"] = Field(
        default="layerwise", description="layer-wise two-point crossover")
    mutation: Literal["hierarchical"] = Field(
        default="hierarchical",
        description="hierarchical mutation: backbone, operator or featurizer")
    crossover_prob: float = Field(
        default=0.9, ge=0.0, le=1.0,
        description="probability that a pair of parents is crossed over")
    mutation_prob: float = Field(
        default=1.0, ge=0.0, le=1.0, description="probability that an offspring is mutated")
    n_mutations: int = Field(
        default=1, ge=1, le=16, description="mutations applied to a mutated offspring")
    # LIV operator classes a genome may use (None: any that the runtime runs)
    token_mixers: list[str] | None = Field(
        default=None, description="token mixers a genome may use (None: any that the runtime runs)")
    channel_mixers: list[str] | None = Field(
        default=None,
        description="channel mixers a genome may use (None: any that the runtime runs)")
    # depth range of random genomes in the initial population
    layers: tuple[int, int] = Field(
        default=(4, 24), description="[min, max] depth of random genomes in the initial population")
    # Surrogate-assisted pre-selection (star.search.surrogate): make `oversample` x population
    # offspring per generation and send to the devices only the population's worth predicted
    # best by an online ridge model of the told F/G on analytic features (the first generation:
    # by the analytic costs alone). Offspring are free, device evaluations are not. False: plain
    # NSGA-II offspring (runs created before this field existed replay that way).
    surrogate: bool = Field(
        default=True, description="pre-select offspring with the online surrogate (oversample x "
        "population bred, population kept)")
    oversample: int = Field(
        default=10, ge=1, le=64,
        description="offspring bred per kept offspring when the surrogate pre-selects")
    # predicted objectives are lowered by this many predictive sd before ranking (optimism in
    # the face of uncertainty; 0 ranks by the predicted mean)
    optimism: float = Field(
        default=1.0, ge=0.0, le=5.0,
        description="predicted objectives are lowered by this many predictive sd before"
        " ranking")
    # how the kept offspring are chosen (star.search.preselect): "hv" greedy hypervolume gain
    # over everything told, "rank" NSGA-II's rank and crowding with the population
    preselect: Literal["hv", "rank"] = Field(
        default="hv", description="how kept offspring are chosen: hv (greedy hypervolume gain) or "
        "rank (NSGA-II)")
    # share of the oversampled pool drawn fresh from the initial sampler (seed mutants, random
    # genomes) instead of bred from the population: the surrogate keeps the good ones
    immigrants: float = Field(
        default=0.3, ge=0.0, le=1.0,
        description="share of the bred pool drawn fresh from the initial sampler")

    @model_validator(mode="before")
    @classmethod
    def _stored_before_surrogate(cls, data: Any, info: ValidationInfo) -> Any:
        """A stored config (resume) written before the surrogate existed ran without it: its
        replay must ask the genomes it asked then."""
        if (isinstance(data, dict) and info.context and info.context.get("stored")
                and "surrogate" not in data):
            return {**data, "surrogate": False}
        return data

    @field_validator("token_mixers", "channel_mixers")
    @classmethod
    def _known(cls, v: list[str] | None, info: Any) -> list[str] | None:
        if v is None:
            return v
        enum = TokenMixer if info.field_name == "token_mixers" else ChannelMixer
        names = [m.value for m in enum]
        if not v:
            raise ValueError("must name at least one operator (or be omitted for any)")
        for i, name in enumerate(v):
            if name not in names:
                raise ValueError(f"[{i}]: unknown operator {name!r}; expected one of {names}")
        return v

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1] <= 64:
            raise ValueError(f"must be [min, max] with 1 <= min <= max <= 64, not {list(v)}")
        return v

    @property
    def token_mixer_enums(self) -> list[TokenMixer] | None:
        return [TokenMixer(m) for m in self.token_mixers] if self.token_mixers else None

    @property
    def channel_mixer_enums(self) -> list[ChannelMixer] | None:
        return [ChannelMixer(m) for m in self.channel_mixers] if self.channel_mixers else None


class SearchConfig(BaseModel):
    """One search run. Sizes default to the lab's real settings; tests shrink them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128, description="run name (unique in the lab)")
    seed: int = Field(
        default=0, ge=0, description="pymoo's seed, and every candidate's training seed")
    population: int = Field(default=16, ge=2, description="candidates per generation")
    generations: int = Field(
        default=18, ge=1, description="generations, including the initial population")
    base_genome: Path | None = Field(
        default=None, description="genome whose frozen model genes (vocabulary, numerics) random "
        "genomes take")
    seed_genomes: list[Path] = Field(
        default_factory=list, description="genome files that are the first members of generation 0")
    proxy_scale: ScaleSettings = Field(
        default=TINY_SETTINGS,
        description="the scale candidates are proxy-trained at (quality objective)")
    deploy_scale: ScaleSettings | Literal["native"] = Field(
        default="native",
        description="the scale candidates are exported and measured at ('native': the "
        "genome's own)")
    quant: Quant = Field(
        default=Quant.Q4_0,
        description="weight type of the measured files (llama-quantize's types; q4_k_m "
        "is what most people ship)")
    runtime: Literal["llama.cpp", "executorch"] = Field(
        default="llama.cpp",
        description="who measures the candidates: llama.cpp (a GGUF; the search is fenced into "
        "the stock architectures, allowed_archs) or executorch (a .pte; any operator on any "
        "layer, linear attention included)")
    pte_quant: Literal["8da4w", "fp32"] = Field(
        default="8da4w",
        description="runtime executorch: weight type of the measured .pte (8da4w: int8 dynamic "
        "activations, int4 weights in groups of 32, XNNPACK; fp32)")
    cross_runtime: Literal["executorch"] | None = Field(
        default=None,
        description="runtime llama.cpp: also measure every candidate with this runtime (a .pte "
        "at pte_quant) at the screening contexts; not an objective: the report shows where the "
        "two runtimes agree and where they differ")
    contexts: list[int] = Field(
        default_factory=lambda: [4096, 32768],
        description="context lengths measured (TTFT at C, decode at depth C, peak RSS "
        "at C)")
    repetitions: int = Field(default=3, ge=1, description="repetitions of each measured figure")
    n_gen: int = Field(default=32, ge=1, description="tokens generated for the decode figure")
    # Device classes (kind[:tag...]) that profile every candidate; None: those the measured
    # objectives and budgets name.
    device_classes: list[str] | None = Field(
        default=None,
        description="device classes (kind[:tag...]) that measure every candidate (None:"
        " those the objectives and budgets name)")
    objectives: list[str] = Field(
        default_factory=lambda: ["quality", "params"], min_length=1,
        description="metrics to minimise: quality, params, active_params, "
        "kv_bytes_per_token, ttft_ms@C/class, decode_ms@C/class, "
        "peak_rss_mb@C/class")
    budgets: list[Budget] = Field(
        default_factory=list,
        description="constraints value(metric) <= max (pymoo constraints, not "
        "penalties)")
    allowed_archs: list[str] | None = Field(
        default=None, description="llama.cpp architectures a genome may export to (None: any)")
    baselines: list[Baseline] = Field(
        default_factory=list,
        description="genomes measured and trained like candidates but never bred (the "
        "models to beat)")
    # llama.cpp flash attention settings every candidate is measured under (each objective
    # takes the candidate's better setting; a genome without attention is measured once, since
    # the setting changes nothing in it). Off and on differ more than most genes do at long
    # context: off holds a context x heads score buffer, on decodes slower on CPU.
    flash_attn: list[bool] = Field(
        default_factory=lambda: [False, True], min_length=1, max_length=2,
        description="llama.cpp flash-attention settings every candidate is measured under; "
        "each objective takes the better")
    staging: Staging | None = Field(
        default=None, description="screen every candidate at short contexts, confirm the near-"
        "frontier ones at long contexts")
    generation_deadline_s: float = Field(
        default=6 * 3600.0, gt=0,
        description="unfinished profile jobs of a generation are cancelled after this "
        "long")
    poll_interval_s: float = Field(
        default=5.0, gt=0, description="how often the engine reads job states")
    export_seed: int = Field(
        default=0, ge=0,
        description="seed of the random deployment weights (latency and memory ignore "
        "their values)")
    max_attempts: int = Field(
        default=3, ge=1, description="attempts of a profile job before it fails")
    operators: OperatorSettings = Field(
        default_factory=OperatorSettings,
        description="what the pymoo operators may produce and how often they vary a "
        "genome")
    # Proxy training of the quality objective (metric "quality" = ProxyResult.quality_loss). The
    # model trained is the genome at ``proxy_scale``: ``proxy.model_scale`` is not used here.
    # Without this section, the file's top-level ``proxy:`` (as `star proxy train`) is used.
    proxy: ProxyConfig = Field(
        default_factory=ProxyConfig, description="proxy training of the quality objective")

    @model_validator(mode="before")
    @classmethod
    def _stored_before_settings(cls, data: Any, info: ValidationInfo) -> Any:
        """A stored config (resume) written before ``flash_attn`` existed measured with it off."""
        if (isinstance(data, dict) and info.context and info.context.get("stored")
                and "flash_attn" not in data):
            return {**data, "flash_attn": [False]}
        # ExecuTorch has no flash-attention switch: one setting, recorded as off
        if isinstance(data, dict) and data.get("runtime") == "executorch" \
                and "flash_attn" not in data:
            return {**data, "flash_attn": [False]}
        return data

    # ---- field checks ---------------------------------------------------------------------

    @field_validator("flash_attn")
    @classmethod
    def _settings(cls, v: list[bool]) -> list[bool]:
        if len(set(v)) != len(v):
            raise ValueError(f"each setting once, not {v}")
        return sorted(v)

    @field_validator("baselines")
    @classmethod
    def _baseline_names(cls, v: list[Baseline]) -> list[Baseline]:
        names = [b.name for b in v]
        for i, name in enumerate(names):
            if names.index(name) != i:
                raise ValueError(f"[{i}]: a second baseline named {name!r} (give it a label)")
        return v

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        for i, name in enumerate(v):
            try:
                parse_metric(name)
            except ValueError as exc:
                raise ValueError(f"[{i}]: {exc}") from None
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate objectives in {v}")
        return v

    @field_validator("contexts")
    @classmethod
    def _contexts(cls, v: list[int]) -> list[int]:
        if not v or any(c <= 0 for c in v) or len(set(v)) != len(v):
            raise ValueError(f"must be distinct positive token counts, not {v}")
        return v

    @field_validator("allowed_archs")
    @classmethod
    def _archs(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        from star.export import supported_targets

        names = [t.name for t in supported_targets()]
        for i, arch in enumerate(v):
            if arch not in names:
                raise ValueError(f"[{i}]: unknown llama.cpp arch {arch!r}; expected one of {names}")
        return v

    @field_validator("device_classes")
    @classmethod
    def _classes(cls, v: list[str] | None) -> list[str] | None:
        for i, name in enumerate(v or ()):
            try:
                parse_metric(f"ttft_ms@1/{name}")
            except ValueError as exc:
                raise ValueError(f"[{i}]: {name!r} is not kind[:tag...] (x86 or android)") from exc
        return v

    # ---- cross-field checks ---------------------------------------------------------------

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> SearchConfig:
        problems: list[str] = []
        classes = self.measured_classes()
        for where, key in self.named_metrics():
            if key.metric in MEASURED:
                if key.context not in self.contexts:
                    problems.append(f"{where}: context {key.context} is not in contexts "
                                    f"{self.contexts} (no job would measure it)")
                if self.device_classes is not None and key.device_class not in classes:
                    problems.append(f"{where}: device class {key.device_class!r} is not in "
                                    f"device_classes {self.device_classes}")
        if self.staging is not None:
            problems += self._staging_problems(self.staging)
        if self.cross_runtime is not None and self.cross_runtime == self.runtime:
            problems.append(f"cross_runtime: {self.cross_runtime} is the run's runtime already")
        if self.runtime == "executorch":
            if self.flash_attn != [False]:
                problems.append(f"flash_attn: {self.flash_attn} is a llama.cpp setting; runtime "
                                "executorch has none (remove it)")
            if self.allowed_archs is not None:
                problems.append("allowed_archs: fences the search into llama.cpp's "
                                "architectures; runtime executorch runs any genome (remove it)")
        if self.uses_quality() and not (set(self.proxy.tasks) - {"memorization"}):
            problems.append("proxy.tasks: the quality objective needs a recall-like task or "
                            "text (memorization alone is only a screen)")
        # a stored config (resume) was checked when its run started; its genome files may be gone
        stored = bool(info.context and info.context.get("stored"))
        problems += self._budget_problems(floors=not stored)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _staging_problems(self, st: Staging) -> list[str]:
        problems: list[str] = []
        for name in ("screen", "confirm"):
            values = getattr(st, name) or []
            for i, c in enumerate(values):
                if c not in self.contexts:
                    problems.append(f"staging.{name}[{i}]: context {c} is not in contexts "
                                    f"{self.contexts}")
            if len(set(values)) != len(values):
                problems.append(f"staging.{name}: each context once, not {values}")
        screen = self.screen_contexts()
        if not screen:
            problems.append(f"staging.confirm: {st.confirm} leaves no screening context (every "
                            f"candidate is measured at contexts {self.contexts} minus these)")
        both = sorted(set(screen) & set(st.confirm))
        if both:
            problems.append(f"staging.screen: contexts {both} are also confirm contexts")
        missing = sorted(set(self.contexts) - set(screen) - set(st.confirm))
        if missing:
            problems.append(f"staging.screen: contexts {missing} are in neither stage")
        return problems

    def _budget_problems(self, *, floors: bool = True) -> list[str]:
        problems: list[str] = []
        for i, budget in enumerate(self.budgets):
            key = budget.key
            for side in ("max", "min"):
                limit = getattr(budget, side)
                if limit is not None and limit < 0:
                    problems.append(f"budgets[{i}].{side}: {limit:g} is negative ({key.metric} "
                                    "is never negative)")
            if budget.max is None or budget.max < 0:
                continue
            where = f"budgets[{i}].max"
            floor = self.smallest_possible(key.metric) if floors else None
            if floor is not None and budget.max < floor:
                problems.append(f"{where}: {budget.max:g} is below {floor:,.2f}, the smallest "
                                f"possible model's {_FLOOR_WHAT[key.metric]}: no genome can meet "
                                "it")
        return problems

    # ---- derived views --------------------------------------------------------------------

    @property
    def cost_quant(self) -> Quant:
        """The weight type the analytic cost model prices (8da4w stores 4-bit weights in groups
        of 32 with a scale each, as q4_0 does)."""
        if self.runtime == "executorch":
            return Quant.Q4_0 if self.pte_quant == "8da4w" else Quant.F32
        return self.quant

    @property
    def artifact_quant(self) -> str:
        """The ``quant`` of the measured files (artifacts.quant)."""
        return self.pte_quant if self.runtime == "executorch" else self.quant.value

    @property
    def artifact_format(self) -> str:
        """The format of the measured files (artifacts.format): gguf or pte."""
        return "pte" if self.runtime == "executorch" else "gguf"

    def pte_max_context(self) -> int:
        """Static KV length of an exported .pte: the longest context plus the decode tokens."""
        return max(self.contexts) + self.n_gen

    def bounds(self) -> list[Bound]:
        """Every budget as pymoo constraints (a budget with max and min is two)."""
        return [b for budget in self.budgets for b in budget.bounds()]

    def named_metrics(self) -> list[tuple[str, MetricKey]]:
        """(field path, parsed metric) of every objective and budget."""
        out = [(f"objectives[{i}]", parse_metric(n)) for i, n in enumerate(self.objectives)]
        out += [(f"budgets[{i}].metric", b.key) for i, b in enumerate(self.budgets)]
        return out

    def measured_classes(self) -> list[str]:
        """Device classes that profile every candidate (in order, no duplicates)."""
        if self.device_classes is not None:
            return list(dict.fromkeys(self.device_classes))
        names = [k.device_class for _, k in self.named_metrics() if k.metric in MEASURED]
        return list(dict.fromkeys(n for n in names if n))

    def screen_contexts(self) -> list[int]:
        """Contexts every candidate is measured at (all of them without staging)."""
        if self.staging is None:
            return list(self.contexts)
        if self.staging.screen is not None:
            return list(self.staging.screen)
        return [c for c in self.contexts if c not in self.staging.confirm]

    def confirm_contexts(self) -> list[int]:
        """Contexts measured only for the chosen candidates and the baselines."""
        return list(self.staging.confirm) if self.staging is not None else []

    def uses_quality(self) -> bool:
        return any(k.metric == "quality" for _, k in self.named_metrics())

    def uses_devices(self) -> bool:
        return bool(self.measured_classes())

    def objective_keys(self) -> list[MetricKey]:
        return [parse_metric(n) for n in self.objectives]

    def base_genes(self) -> tuple[int, ...] | None:
        return load_genome(self.base_genome).genes if self.base_genome else None

    def seed_genes(self) -> list[tuple[int, ...]]:
        return [load_genome(p).genes for p in self.seed_genomes]

    def baseline_genes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, genes) of every baseline, in config order."""
        return [(b.name, load_genome(b.genome).genes) for b in self.baselines]

    def deploy_spec(self, genome: Genome) -> ArchSpec:
        spec = genome.to_spec()
        if self.deploy_scale == "native":
            return spec
        return scale_spec(spec, self.deploy_scale.to_scale())

    def proxy_spec(self, genome: Genome) -> ArchSpec:
        return scale_spec(self.deploy_spec(genome), self.proxy_scale.to_scale())

    def smallest_possible(self, metric: str) -> float | None:
        """A lower bound of ``metric`` over every genome of this search (None: no useful bound).

        The token embedding alone (vocabulary x the smallest width, at ``quant``): any model
        holds it, so a budget below it is impossible whatever the layers are."""
        if metric not in _FLOOR_WHAT:
            return None
        from star.cost import storage_type
        from star.genome.encoding import MODEL_GENES, GenomeData

        try:
            base = self.base_genes()
        except Exception:  # noqa: BLE001 - an unreadable file is reported by its own check
            return None
        vocab = GenomeData.decode(base).model["vocab_size"] if base else 65536
        tied = bool(GenomeData.decode(base).model["tie_embeddings"]) if base else True
        d_gene = MODEL_GENES[0]
        assert d_gene.name == "d_model"
        width = d_gene.low * d_gene.unit  # the smallest width a genome can have
        if self.deploy_scale != "native":
            width = self.deploy_scale.d_model
            vocab = self.deploy_scale.vocab_size or vocab
        params = vocab * width * (1 if tied else 2)
        if metric in ("params", "active_params"):
            return params / 1e6
        shape = (vocab, width)
        head = storage_type("lm_head.weight", shape, self.cost_quant).nbytes(shape)
        embd = storage_type("embed.weight", shape, self.cost_quant).nbytes(shape)
        return (head if tied else embd + head) / 2**20

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


_FLOOR_WHAT = {
    "peak_rss_mb": "weight bytes (MiB)",
    "params": "parameter count (millions)",
    "active_params": "parameter count (millions)",
}

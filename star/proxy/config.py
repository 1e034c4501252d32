"""``ProxyConfig``: what a proxy training run does (the ``proxy:`` section of lab_config.yaml).

The defaults are the recipe chosen by measured fidelity (bench/proxy_fidelity.py, issue #10):
validation loss on the bundled public-domain English corpus after 20 AdamW steps of 16 windows of
32 byte-level tokens (lr 3e-3, warmup 10%, cosine; text and task sizes at ``scale`` 0.1),
width-aware (muP) initialisation and learning rates, bf16 autocast where the CPU multiplies bf16
natively, one thread. Against a 2x wider model trained on 24x the tokens it ranked 17
architectures with Spearman +0.95 [90% CI +0.81, +0.97] (the reference's own seed-to-seed
Spearman: +0.92) at 0.6 CPU-seconds per 6-layer candidate; 10 or 40-60 steps, batch 8, 64-token
windows, width 128, the standard parametrization and adding MAD tasks all ranked them worse
against that reference, so the MAD tasks are opt-in (``tasks:``, ``weights:``). MAD's full-size
settings (Poli et al. 2024; FACTS.md: six tasks, batch 128, 12,800 examples) remain ``scale: 1.0``
and ``tasks:`` away; ``ProxyConfig.quick()`` is the older CPU preset. Every field here is plain data
(JSON/YAML round-trips), so a config travels to worker processes and Ray workers unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MadTaskName = Literal[
    "in_context_recall",
    "fuzzy_recall",
    "noisy_recall",
    "selective_copying",
    "compression",
    "memorization",
]
TaskName = Literal[MadTaskName, "text"]
MAD_TASKS: tuple[MadTaskName, ...] = get_args(MadTaskName)
ALL_TASKS: tuple[TaskName, ...] = (*MAD_TASKS, "text")
DEFAULT_TASKS: tuple[TaskName, ...] = ("text",)


class TaskParams(BaseModel):
    """Per-task overrides of the MAD baseline; ``None`` keeps the task's default (tasks.py).

    Sizes given here are used as is (``ProxyConfig.scale`` applies only to defaults).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int | None = Field(default=None, ge=4)
    seq_len: int | None = Field(default=None, ge=4)
    n_train: int | None = Field(default=None, ge=1)
    n_test: int | None = Field(default=None, ge=1)
    noise_vocab_size: int | None = Field(default=None, ge=0)
    frac_noise: float | None = Field(default=None, ge=0.0, lt=1.0)
    motif_size: int | None = Field(default=None, ge=1)  # fuzzy recall: key/value motif length
    n_copy: int | None = Field(default=None, ge=1)  # selective copying: tokens to copy


class TextSettings(BaseModel):
    """The real-text component: corpus, byte budget, tokenizer cache, window length."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A text file, a JSONL file (``text`` field) or a directory of them (``.gz`` allowed); None =
    # the built-in corpus named by ``builtin``.
    corpus: Path | None = None
    # Built-in corpora, both offline: "english" = public-domain English shipped with the package
    # (star/proxy/data/english, PROVENANCE.md there); "stdlib" = the installed CPython's standard
    # library (.py sources + pydoc_data/topics.py prose: code, not language).
    builtin: Literal["english", "stdlib"] = "english"
    # Bytes read from the corpus in all (train + validation); bounds reading and BPE time.
    max_bytes: int = Field(default=1024 * 1024, ge=16 * 1024)
    # Share of documents (by hash of their id) that go to validation.
    val_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    seq_len: int = Field(default=64, ge=8)  # tokens per training/validation window
    max_val_windows: int = Field(default=128, ge=1)  # windows scored for validation loss
    cache_dir: Path | None = None  # default: ~/.cache/star-lab (tokenizers/ below it)


class ProxyConfig(BaseModel):
    """A proxy training run: tasks, their size, optimiser, budgets, and where it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Components trained (each on a fresh model from the same seed, as MAD trains one model per
    # task); "text" is the real-text perplexity component.
    tasks: tuple[TaskName, ...] = DEFAULT_TASKS
    task_params: dict[TaskName, TaskParams] = Field(default_factory=dict)
    # Shrinks task defaults for CPU/CI: example counts scale linearly (floored), sequence
    # lengths with sqrt(scale) so that the tasks keep their structure; text bytes and window
    # length shrink likewise.
    scale: float = Field(default=0.1, gt=0.0, le=1.0)
    # Seed of the synthetic data and the text split: identical for every candidate of a search,
    # so candidates differ only by architecture and their own (training) seed.
    data_seed: int = Field(default=0, ge=0)
    text: TextSettings = Field(default_factory=TextSettings)
    # Weight of each component in ``quality_loss`` (normalised over the trained components); a
    # trained component not named here keeps its default: text 1, the other MAD tasks sharing 1,
    # memorization 0 (reported beside the objective, not in it: FACTS.md).
    weights: dict[TaskName, float] = Field(default_factory=dict)
    # How a MAD task enters the objective: "accuracy" (1 - held-out accuracy) or "loss" (held-out
    # answer cross-entropy / ln(answer alphabet): graded where accuracy is still at chance).
    score: Literal["accuracy", "loss"] = "accuracy"

    # Proxy width of a genome (star.genome.scale presets) when a deployment spec is given.
    model_scale: Literal["tiny", "proxy"] = "tiny"

    # Optimisation, per component (MAD: AdamW, cosine; lr grid 1e-4..1e-3, wd 0 or 0.1).
    steps: int = Field(default=20, ge=1)  # optimizer steps per component
    batch_size: int = Field(default=16, ge=1)
    lr: float = Field(default=3e-3, gt=0.0)
    min_lr_ratio: float = Field(default=0.1, ge=0.0, le=1.0)  # cosine floor, as a share of lr
    warmup_frac: float = Field(default=0.1, ge=0.0, lt=1.0)  # linear warmup share of steps
    weight_decay: float = Field(default=0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = Field(default=1.0, gt=0.0)
    # "mup": width-aware init and per-matrix Adam learning rates (star/proxy/width.py), so that
    # candidates whose channel mixers differ in width are compared at a learning rate that suits
    # each of them; "standard": every matrix N(0, 0.02) at one learning rate, as HF trains LFM2.
    parametrization: Literal["mup", "standard"] = "mup"
    eval_batch_size: int = Field(default=128, ge=1)
    # Whole-run wall-time budget (all components); each component gets an equal share of what
    # is left. None = steps only.
    wall_time_s: float | None = Field(default=None, gt=0.0)

    # Where: "auto" = cuda if available else cpu. ``amp``: bf16 autocast (matmuls in bf16, fp32
    # weights, norms, losses and SSM / linear-attention scans) on CUDA and on CPUs with native bf16
    # matmul (AVX512-BF16, AMX), where it trains 1.7x (proxy shape) to 2.5x (d_model 256) faster
    # than fp32 (bench/model_throughput.py) and ranks candidates alike (bench/proxy_fidelity.py).
    device: str = "auto"
    amp: bool = True
    # Intra-op threads of one training (None: one thread in-process, as the pool's default: the
    # proxy's small matrices gain little from more, and on a shared machine OpenMP threads that
    # wait for each other burn CPU; measured, `star proxy train` on 2 threads of a loaded box used
    # 85 CPU-s where one thread used ~10. The pool divides the cores among its workers).
    threads: int | None = Field(default=None, ge=1)

    # Parallel execution (ProxyPool): local worker processes, or a Ray cluster when set
    # ("auto" = the cluster this machine belongs to, "ray://host:10001" = a remote one).
    workers: int | None = Field(default=None, ge=1)  # None: cores // threads, at least 1
    ray_address: str | None = None

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, v: tuple[TaskName, ...]) -> tuple[TaskName, ...]:
        if not v:
            raise ValueError("at least one task must be enabled")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate task names in {list(v)}")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto" and not (v in ("cpu", "mps", "cuda") or v.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N, not {v!r}")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[TaskName, float]) -> dict[TaskName, float]:
        bad = {k: w for k, w in v.items() if not w >= 0.0}
        if bad:
            raise ValueError(f"weights must be >= 0, not {bad}")
        return v

    @model_validator(mode="after")
    def _params_for_enabled(self) -> ProxyConfig:
        if "text" in self.task_params:
            raise ValueError("task_params.text: text is configured in the `text` section")
        return self

    @property
    def mad_tasks(self) -> tuple[TaskName, ...]:
        return tuple(t for t in self.tasks if t != "text")

    @classmethod
    def quick(cls, **overrides: object) -> ProxyConfig:
        """The CPU preset from before #10: scale 0.1, batch 32, lr 1e-3, 200 steps per component at
        tiny width (10x the default budget; tasks are the default ones unless given)."""
        base: dict[str, object] = {
            "scale": 0.1,
            "steps": 200,
            "batch_size": 32,
            "lr": 1e-3,
            "eval_batch_size": 128,
            "model_scale": "tiny",
        }
        base.update(overrides)
        return cls.model_validate(base)

"""What a run would measure, and roughly how much device time it costs, before it starts.

``star search run --dry-run`` prints this and writes nothing. Device time is estimated per job
from what llama-bench does (``device_agents.llamacpp.commands``): per context, a TTFT process
prefills C tokens (repetitions, plus an untimed warm-up below 16K), and a decode process
prefills C tokens once (the depth, untimed but paid; ``commands.prefills``) then times ``n_gen``
tokens per repetition. The prefill and decode times come from the cost model's roofline of the
seed and baseline genomes at the deployment scale, with an effective device speed: taken from
this lab's own past measurements of the device class when there are some (median measured /
roofline), else a nominal 2-thread laptop CPU (stated in the output: an estimate to size a
study, not a promise).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from device_agents.llamacpp.commands import prefills
from star.cost import Quant
from star.cost.roofline import DeviceRoofline, decode_seconds, ttft_seconds
from star.db.device_class import DeviceClass
from star.genome import ArchSpec, Genome
from star.search.config import SearchConfig

# Effective speed of 2 llama.cpp threads on a current laptop core pair (measured here on
# LFM2-350M Q4_0: ~280 prompt tokens/s at 4K, ~22 ms/token decode at depth 4K).
NOMINAL = DeviceRoofline("nominal 2-thread laptop CPU", bandwidth=12e9, flops=150e9)
LOAD_S = 1.0  # model load and process start per llama-bench process


@dataclass(frozen=True)
class StageCost:
    stage: str  # "screen" | "confirm" | "baselines"
    device_class: str
    contexts: tuple[int, ...]
    settings: int  # flash-attention settings measured
    candidates: int  # models measured (upper bound for candidates: duplicates are reused)
    jobs: int
    seconds: float  # estimated device time, all jobs of this row


@dataclass(frozen=True)
class Plan:
    config: SearchConfig
    rows: list[StageCost]
    speed: dict[str, str]  # device class -> where its speed estimate comes from
    unstaged_seconds: float  # what measuring every candidate at every context would cost

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.rows)


def job_seconds(spec: ArchSpec, contexts: Sequence[int], quant: Quant, *, repetitions: int,
                n_gen: int, device: DeviceRoofline, scale: float = 1.0) -> float:
    """Device seconds of one profile job (see the module doc). ``scale``: measured / roofline."""
    total = 0.0
    for c in contexts:
        prefill = ttft_seconds(spec, c, device, quant) * scale
        decode = decode_seconds(spec, c, device, quant) * scale
        total += (2 * LOAD_S + prefills(c, repetitions) * prefill
                  + repetitions * n_gen * decode)
    return total


def _specs(config: SearchConfig) -> tuple[list[ArchSpec], list[ArchSpec]]:
    from star.genome import load_genome

    seeds = [config.deploy_spec(load_genome(p)) for p in config.seed_genomes]
    if not seeds and config.base_genome is not None:
        seeds = [config.deploy_spec(load_genome(config.base_genome))]
    baselines = [config.deploy_spec(Genome(g)) for _, g in config.baseline_genes()]
    return seeds, baselines


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def device_scale(session: object | None, device_class: str) -> tuple[float, str]:
    """Measured / roofline TTFT of this lab's past measurements of the class (median), or 1."""
    if session is None:
        return 1.0, f"{NOMINAL.name} (no past measurements read)"
    from sqlalchemy import select

    from star.db.models import Candidate, Device, Measurement, Run
    from star.search.config import SearchConfig as Config

    wanted = DeviceClass.parse(device_class)
    query = (select(Measurement.context, Measurement.ttft_median_ms, Candidate.genome, Run.config,
                    Device.tags)
             .join(Device, Device.id == Measurement.device_id)
             .join(Candidate, Candidate.id == Measurement.candidate_id)
             .join(Run, Run.id == Candidate.run_id)
             .where(Device.kind == wanted.kind, Measurement.ttft_median_ms.is_not(None))
             .order_by(Measurement.id.desc()).limit(200))
    ratios = []
    rows = session.execute(query)  # type: ignore[attr-defined]
    for context, ttft_ms, genome, run_config, tags in rows:
        if not wanted.serves(wanted.kind, tags or ()):
            continue
        try:
            cfg = Config.model_validate(run_config["search"], context={"stored": True})
            spec = cfg.deploy_spec(Genome(tuple(genome["genes"])))
            ratios.append(ttft_ms / 1000 / ttft_seconds(spec, context, NOMINAL, cfg.cost_quant))
        except Exception:  # noqa: BLE001 - a row of another shape: not evidence
            continue
    if len(ratios) < 3:
        return 1.0, f"{NOMINAL.name} (fewer than 3 past measurements of {device_class})"
    scale = statistics.median(ratios)
    return scale, f"{len(ratios)} past measurements of {device_class} (x{scale:.2f} nominal)"


def plan(config: SearchConfig, *, session: object | None = None) -> Plan:
    """The stages, jobs and estimated device time of ``config`` (nothing is written)."""
    seeds, baselines = _specs(config)
    settings = len(config.flash_attn)
    reps = config.repetitions
    confirm_reps = (config.staging.confirm_repetitions if config.staging else None) or reps
    n_cand = config.population * config.generations
    screen, confirm = config.screen_contexts(), config.confirm_contexts()
    if config.staging is not None:
        per_gen = config.staging.confirm_max or config.population
        n_confirm = min(config.population, per_gen) * config.generations
    else:
        n_confirm = 0
    rows: list[StageCost] = []
    speed: dict[str, str] = {}
    unstaged = 0.0
    for device_class in config.measured_classes():
        scale, source = device_scale(session, device_class)
        speed[device_class] = source

        def cost(specs: list[ArchSpec], contexts: Sequence[int], repetitions: int,
                 _scale: float = scale) -> float:
            return _mean([job_seconds(s, contexts, config.cost_quant, repetitions=repetitions,
                                      n_gen=config.n_gen, device=NOMINAL, scale=_scale)
                          for s in specs])

        if not seeds:
            continue
        rows.append(StageCost("screen", device_class, tuple(screen), settings, n_cand,
                              n_cand * settings, n_cand * settings * cost(seeds, screen, reps)))
        unstaged += n_cand * settings * cost(seeds, config.contexts, reps)
        if confirm:
            rows.append(StageCost("confirm", device_class, tuple(confirm), settings, n_confirm,
                                  n_confirm * settings,
                                  n_confirm * settings * cost(seeds, confirm, confirm_reps)))
        if baselines:
            b = len(baselines)
            rows.append(StageCost(
                "baselines", device_class, tuple(config.contexts), settings, b,
                b * settings * (2 if confirm else 1),
                b * settings * (cost(baselines, screen, reps)
                                + (cost(baselines, confirm, confirm_reps) if confirm else 0))))
    return Plan(config, rows, speed, unstaged + sum(r.seconds for r in rows
                                                    if r.stage == "baselines"))

"""``SearchConfig``: the ``search:`` section of lab_config.yaml, checked before a run starts.

Example (every field is documented on the model below)::

    search:
      name: lfm2-s24
      seed: 0
      population: 16
      generations: 18
      base_genome: genomes/lfm2-350m.yaml       # frozen family genes (vocabulary, numerics)
      seed_genomes: [genomes/lfm2-350m.yaml]
      proxy_scale: {d_model: 128, head_dim: 32, vocab_size: 4096}
      deploy_scale: native                       # or {d_model: 1024, ...}
      quant: q4_0
      contexts: [4096, 32768]
      repetitions: 3
      objectives: [quality, ttft_ms@4096/android:s24, peak_rss_mb@32768/android:s24]
      budgets: [{metric: peak_rss_mb@32768/android:s24, max: 900}]
      allowed_archs: [lfm2, qwen3, granitehybrid]
      baselines: [genomes/llama-3.2-1b-like-350m.yaml]   # measured and trained, never bred
      flash_attn: [false, true]                  # measure both; each objective takes the better
      staging: {confirm: [32768], confirm_rank: 1, confirm_max: 4}
      operators: {token_mixers: [shortconv, attention], channel_mixers: [swiglu]}
      proxy: {tasks: [in_context_recall, text], steps: 200}

Two stages of checks, every error naming its field (``objectives[2]: ...``):
``SearchConfig.model_validate`` (names, ranges, impossible budgets, contexts) and
``check_devices`` (a measured metric naming a device class with no registered, non-retired device).
"""

from star.search.config.devices import check_devices, device_problems
from star.search.config.errors import SearchConfigError, field_path
from star.search.config.load import load_search_config, parse_search_config, runtime_problems
from star.search.config.schema import (
    TINY_SETTINGS,
    Baseline,
    Budget,
    OperatorSettings,
    ScaleSettings,
    SearchConfig,
    Staging,
)

__all__ = [
    "TINY_SETTINGS", "Baseline", "Budget", "OperatorSettings", "ScaleSettings", "SearchConfig",
    "SearchConfigError", "Staging", "check_devices", "device_problems", "field_path",
    "load_search_config", "parse_search_config", "runtime_problems",
]

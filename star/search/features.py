"""Analytic features of a genome per metric, for the surrogate (``star.search.surrogate``).

``Costs`` holds one genome's analytic costs at deployment scale (``star.cost``), computed once
and cached by the surrogate; ``features`` turns them into the regression row of one metric key
at its context. A measured cost is a sum of components (time per kind of work, bytes per kind of
memory, overheads), so its row is the components' shares of the analytic base plus overheads
relative to it (``Row.additive``); quality is a smooth function of sizes and operator mix, so its
row holds logs and shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from star.cost import (
    Quant,
    count_params,
    decode_flops,
    kv_bytes,
    kv_bytes_per_token,
    state_bytes,
    weight_bytes,
)
from star.cost.flops import prefill_flops_by_kind
from star.cost.roofline import active_weight_bytes
from star.genome import ArchSpec
from star.genome.spec import (
    AttentionSpec,
    FFNSpec,
    MoESpec,
    TokenMixer,
)
from star.search.objectives import MetricKey


def _log(x: float) -> float:
    return math.log(max(float(x), 1e-12))


@dataclass(frozen=True)
class Costs:
    """What the features are made of: one genome's analytic costs at deployment scale."""

    spec: ArchSpec
    quant: Quant
    cache_bytes_per_element: float
    params: float
    non_embedding: float
    active: float
    weights: float
    active_weights: float
    state: float
    head: float  # output-head parameters (tied or not)
    widest_ffn: float  # the widest FFN (MoE: expert width x top_k)
    max_heads: float  # the most query heads of an attention layer (0: none)
    shares: tuple[float, ...]  # attention, swa, shortconv, ssm, linear attention, moe
    _at: dict[int, dict[str, float]] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, spec: ArchSpec, quant: Quant, cache_bytes_per_element: float = 2) -> Costs:
        counts = count_params(spec)
        n = max(spec.n_layers, 1)
        kinds = [layer.mixer.kind for layer in spec.layers]
        moe = widest = heads = 0.0
        for layer in spec.layers:
            c, m = layer.channel, layer.mixer
            if isinstance(c, MoESpec):
                moe += 1
                widest = max(widest, c.expert_dim * c.top_k)
            elif isinstance(c, FFNSpec):
                widest = max(widest, c.ffn_dim)
            if isinstance(m, AttentionSpec):
                heads = max(heads, m.n_heads)
        shares = tuple(kinds.count(k) / n for k in (
            TokenMixer.ATTENTION, TokenMixer.SWA, TokenMixer.SHORTCONV, TokenMixer.SSM,
            TokenMixer.LINEAR_ATTENTION)) + (moe / n,)
        return cls(spec=spec, quant=quant, cache_bytes_per_element=cache_bytes_per_element,
                   params=counts.params, non_embedding=counts.non_embedding,
                   active=counts.active, weights=weight_bytes(spec, quant),
                   active_weights=active_weight_bytes(spec, quant), state=state_bytes(spec),
                   head=spec.vocab_size * spec.d_model, widest_ffn=widest, max_heads=heads,
                   shares=shares)

    def at(self, context: int) -> dict[str, float]:
        """Analytic figures at ``context``: prefill FLOPs split by kind of work, decode FLOPs,
        KV bytes."""
        if context not in self._at:
            parts = prefill_flops_by_kind(self.spec, context)
            self._at[context] = {
                **parts, "prefill": sum(parts.values()),
                "decode": decode_flops(self.spec, context),
                "kv": kv_bytes(self.spec, context, self.cache_bytes_per_element),
            }
        return self._at[context]

    def analytic(self, key: MetricKey) -> float | None:
        """The exact value of an analytic metric (units of ``star.search.objectives``)."""
        if key.metric == "params":
            return self.params / 1e6
        if key.metric == "active_params":
            return self.active / 1e6
        if key.metric == "kv_bytes_per_token":
            return kv_bytes_per_token(self.spec, self.cache_bytes_per_element)
        return None

    def lower_bound(self, key: MetricKey) -> float | None:
        """A value the metric can never be below (peak RSS: weights + KV + state, MiB)."""
        if key.metric == "peak_rss_mb" and key.context is not None:
            return (self.weights + self.at(key.context)["kv"] + self.state) / 2**20
        return None


@dataclass(frozen=True)
class Row:
    """One genome's regression input for one metric. ``additive``: the metric is a sum of
    costs, modelled as ``base x (b + w . x)`` with ``x`` the components' shares of ``base``
    (exact for a device that spends a fixed time or memory per unit of each component);
    otherwise ``exp(b + w . x)``."""

    additive: bool
    base: float
    x: np.ndarray


def features(key: MetricKey, c: Costs) -> Row:
    """The regression row of metric ``key`` for one genome; see the module doc."""
    spec = c.spec
    n_layers = max(spec.n_layers, 1)
    mix = list(c.shares)
    if key.metric == "quality":
        row = [_log(c.non_embedding + 1), _log(c.params), _log(c.active), _log(n_layers),
               _log(spec.d_model), *mix]
        # base: used only before any quality is told, as an order (more non-embedding
        # parameters, lower loss: the scaling laws' direction, not their constants)
        return Row(False, 1.0 / (c.non_embedding + 1), np.array(row))
    assert key.context is not None, key
    at = c.at(key.context)
    if key.metric == "ttft_ms":
        # compute by kind of work (each runs at its own efficiency), the output head, weight
        # streaming, per-layer and fixed overheads
        head = 2 * c.head * key.context
        parts = [at["matmul"] - head, head, at["attention"], at["swa"], at["shortconv"],
                 at["ssm"], at["linear_attention"]]
        base = at["prefill"]
        extra = [c.active_weights, n_layers, 1.0]
    elif key.metric == "decode_ms":
        base = c.active_weights + at["kv"] + c.state  # bytes read per token
        parts = [c.active_weights, at["kv"], c.state]
        extra = [at["decode"], n_layers, 1.0]
    elif key.metric == "peak_rss_mb":
        base = (c.weights + at["kv"] + c.state) / 2**20  # the pre-screen's lower bound, MiB
        parts = [c.weights, at["kv"], c.state]
        # compute buffers: activations of a batch of tokens, attention scores (context x heads)
        extra = [spec.d_model, c.widest_ffn, key.context * c.max_heads, 1.0]
    else:
        raise ValueError(f"no features for metric {key.metric!r}")
    total = max(sum(parts), 1e-12)
    x = [p / total for p in parts] + [e / max(base, 1e-12) for e in extra]
    return Row(True, max(base, 1e-12), np.array(x))

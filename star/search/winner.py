"""Take a candidate away: its genome as a YAML file that says where it came from.

``star genome from-candidate RUN CANDIDATE -o winner.yaml`` writes the genome exactly as the
search evolved it (its genes; ``star genome validate`` and ``star export`` take the file as
is), headed by comments with its provenance: the run, the candidate, the llama.cpp
architecture it was measured as, the deployment scale it was measured at, and every objective's
value with its unit, direction and (for device figures) the flash-attention setting that gave
it. ``CANDIDATE`` is a candidate id, a genome-id prefix (8+ hex digits) or a baseline's label.
"""

from __future__ import annotations

import math
from typing import Any

from star.genome import Genome
from star.search.objectives import describe, parse_metric


class CandidateNotFound(LookupError):
    """No candidate of the run matches the reference (the message says what was tried)."""


def find_candidate(data: Any, ref: str) -> str:
    """The genome id of candidate ``ref`` in ``data`` (a ``RunData``)."""
    ref = ref.strip()
    if ref.isdigit():
        for gid, c in data.candidates.items():
            if c.id == int(ref):
                return gid
    hits = [gid for gid, c in data.candidates.items()
            if c.label == ref or (len(ref) >= 8 and gid.startswith(ref.lower()))]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise CandidateNotFound(f"CANDIDATE: {ref!r} matches {len(hits)} candidates; give more "
                                "of the genome id")
    raise CandidateNotFound(f"CANDIDATE: run {data.run.name!r} has no candidate {ref!r} (a "
                            "candidate id, 8+ hex digits of a genome id, or a baseline label)")


def _figure(name: str, v: float | None) -> str:
    if v is None:
        return "missing"
    if math.isinf(v):
        return "OOM"
    return f"{v:,.4g}"


def winner_yaml(data: Any, genome_id: str, evaluation: Any) -> str:
    """The YAML text of a candidate's genome with its provenance as a comment header."""
    cand = data.candidates[genome_id]
    genome = Genome(tuple(cand.genome["genes"]))
    genome = Genome(genome.genes, name=cand.label or f"star-{genome_id[:12]}")
    pre = (cand.analytic_costs or {}).get("prescreen") or {}
    cfg = data.config
    scale = "native (as the genome says)" if cfg.deploy_scale == "native" else (
        ", ".join(f"{k} {v}" for k, v in cfg.deploy_scale.model_dump().items() if v is not None))
    role = "baseline" if cand.is_baseline else f"candidate of generation {data.generation_of(cand)}"
    lines = [
        f"# From run {data.run.name!r} (id {data.run.id}): {role}, candidate id {cand.id}.",
        f"# Genome id {genome_id}; exported to stock llama.cpp as {pre.get('arch')!r}.",
        f"# Measured at deployment scale: {scale}; weights {cfg.artifact_quant} ({cfg.runtime}).",
        "# Figures (device figures at each candidate's better flash-attention setting):",
    ]
    for name, v in evaluation.values.items():
        key = parse_metric(name)
        detail = evaluation.details.get(name)
        how = ""
        if detail is not None and detail.flash_attn is not None:
            how = f", flash attention {'on' if detail.flash_attn else 'off'}"
        if name in evaluation.estimated:
            how += ", estimated (not confirmed at this context)"
        lines.append(f"#   {describe(key)}: {_figure(name, v)}{how}")
    if not evaluation.feasible:
        lines.append(f"# Infeasible in the run: {evaluation.reason}")
    return "\n".join(lines) + "\n" + genome.to_yaml()

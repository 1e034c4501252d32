"""The Pareto frontier of a run, always computed from stored values (never stored by hand)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from star.db.device_class import DeviceClass
from star.search.objectives import MEASURED, MetricKey, parse_metric


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated rows (all objectives minimised). Rows with a non-finite
    value never dominate and are never on the front."""
    if not points:
        return []
    F = np.asarray(points, dtype=float)
    finite = np.flatnonzero(np.isfinite(F).all(axis=1))
    if finite.size == 0:
        return []
    front = NonDominatedSorting().do(F[finite], only_non_dominated_front=True)
    return sorted(int(finite[i]) for i in front)


# ---- a run's frontier, from its stored rows ---------------------------------------------------


@dataclass(frozen=True)
class FrontierPoint:
    candidate_id: int
    genome_id: str
    generation: int | None
    arch: str | None  # llama.cpp architecture it exports to
    values: dict[str, float | None]  # objective and budget metrics (inf: OOM; None: missing)
    feasible: bool
    reason: str
    on_front: bool
    role: str = "candidate"  # or "baseline" (never on the front)
    label: str | None = None
    estimated: tuple[str, ...] = ()  # metrics that are staged estimates, not measurements


@dataclass(frozen=True)
class FrontierReport:
    run: str
    run_id: int
    status: str | None
    objectives: list[str]
    budgets: list[dict[str, Any]]
    device: str | None  # the device (name) or device class the measured metrics were read on
    points: list[FrontierPoint]
    runtime: str = "llama.cpp"  # who measured: llama.cpp (GGUF) or executorch (.pte)

    @property
    def front(self) -> list[FrontierPoint]:
        return [p for p in self.points if p.on_front]

    def to_json(self) -> dict[str, Any]:
        def clean(v: float | None) -> float | str | None:
            return "inf" if v is not None and math.isinf(v) else v

        def point(p: FrontierPoint) -> dict[str, Any]:
            return {
                "candidate_id": p.candidate_id, "genome_id": p.genome_id,
                "generation": p.generation, "arch": p.arch, "role": p.role, "label": p.label,
                "values": {k: clean(v) for k, v in p.values.items()},
                "estimated": list(p.estimated),
                "feasible": p.feasible, "reason": p.reason or None,
            }

        return {
            "run": self.run, "run_id": self.run_id, "status": self.status,
            "objectives": self.objectives, "budgets": self.budgets, "device": self.device,
            "runtime": self.runtime,
            "candidates": len(self.points),
            "feasible": sum(p.feasible for p in self.points),
            "frontier": [point(p) for p in self.front],
            "baselines": [point(p) for p in self.points if p.role == "baseline"],
            "infeasible": [
                {"candidate_id": p.candidate_id, "genome_id": p.genome_id, "reason": p.reason}
                for p in self.points if not p.feasible
            ],
        }


class FrontierError(ValueError):
    """A bad request (unknown device, device of another class); names the field."""


def _retarget(key: MetricKey, device_class: str) -> MetricKey:
    return replace(key, device_class=device_class) if key.metric in MEASURED else key


def run_frontier(db: Any, ref: str | int, *, device: str | None = None) -> FrontierReport:
    """The non-dominated feasible candidates of a run, computed from its stored rows.

    ``device``: a registered device's name (its measurements only), or a device class
    (``kind[:tag...]``) that replaces the class of every measured objective and budget.
    Baselines are listed (``role``) but never on the front; a candidate whose long-context
    figure is a staged estimate (not confirmed) is feasible for the search but not on the
    front, which stands on measurements only."""
    from star.db import repo
    from star.db.errors import NotFoundError
    from star.search.rundata import NotASearchRun, evaluate_run, load_run

    with db.session_scope(readonly=True) as s:
        try:
            data = load_run(s, ref)
        except NotASearchRun as exc:
            raise FrontierError(f"run: {exc}") from None
        config = data.config
        objectives = config.objective_keys()
        budgets = config.bounds()
        device_id = None
        if device is not None:
            try:
                dev = repo.get_device(s, device)
                device_id = dev.id
                for key in [*objectives, *(b.key for b in budgets)]:
                    if key.metric in MEASURED and not DeviceClass.parse(
                            key.device_class or "").serves(dev.kind, dev.tags):
                        raise FrontierError(f"--device: {device!r} ({dev.kind}) is not of class "
                                            f"{key.device_class!r} that {key.name} names")
            except NotFoundError:
                try:
                    parse_metric(f"ttft_ms@1/{device}")
                except ValueError:
                    raise FrontierError(f"--device: no device named {device!r}, and not a "
                                        "device class (x86 or android[:tag...])") from None
                objectives = [_retarget(k, device) for k in objectives]
                budgets = [replace(b, key=_retarget(b.key, device)) for b in budgets]
    evaluations = evaluate_run(data, objectives=objectives, budgets=budgets, device_id=device_id)
    eligible = [gid for gid, e in evaluations.items()
                if e.feasible and not e.estimated and not data.candidates[gid].is_baseline]
    front = {eligible[i] for i in pareto_front([evaluations[g].F for g in eligible])}
    points: list[FrontierPoint] = []
    for gid, e in evaluations.items():
        c = data.candidates[gid]
        pre = (c.analytic_costs or {}).get("prescreen") or {}
        points.append(FrontierPoint(
            candidate_id=c.id, genome_id=gid, generation=data.generation_of(c),
            arch=pre.get("arch"), values=e.values, feasible=e.feasible, reason=e.reason,
            on_front=gid in front, role=c.role, label=c.label, estimated=e.estimated,
        ))
    return FrontierReport(
        run=data.run.name, run_id=data.run.id,
        status=data.run.status.value if data.run.status else None,
        objectives=[k.name for k in objectives],
        budgets=[{"metric": b.name, ("min" if b.lower else "max"): b.limit} for b in budgets],
        device=device, points=points, runtime=data.config.runtime,
    )


def plot_frontier(report: FrontierReport, path: str | Path, *, x: str | None = None,
                  y: str | None = None) -> Path:
    """A PNG of two objectives: feasible candidates, the frontier highlighted (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = report.objectives
    x = x or names[0]
    y = y or (names[1] if len(names) > 1 else None)
    for axis, name in (("--x", x), ("--y", y)):
        if name is not None and name not in names:
            raise FrontierError(f"{axis}: {name!r} is not an objective of run {report.run!r} "
                                f"({names})")
    from star.search.objectives import describe

    feasible = [p for p in report.points if p.feasible and p.role != "baseline"]
    baselines = [p for p in report.points if p.role == "baseline"
                 and all(p.values.get(n) is not None for n in (x, y) if n is not None)]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    try:
        def xy(points: list[FrontierPoint]) -> tuple[list[float], list[float]]:
            xs = [float(p.values[x] or 0.0) for p in points]
            ys = ([float(p.values[y] or 0.0) for p in points] if y is not None
                  else [float(p.generation or 0) for p in points])
            return xs, ys

        shown = {x, y} - {None}
        others = [p for p in feasible if not p.on_front and not shown & set(p.estimated)]
        guessed = [p for p in feasible if not p.on_front and shown & set(p.estimated)]
        ax.scatter(*xy(others), s=18, c="0.6", label=f"feasible, measured ({len(others)})")
        if guessed:
            ax.scatter(*xy(guessed), s=18, facecolors="none", edgecolors="0.6",
                       label=f"long context estimated, not confirmed ({len(guessed)})")
        front = sorted(report.front, key=lambda p: float(p.values[x] or 0.0))
        fx, fy = xy(front)
        # markers only: with more than two objectives the front is not a staircase in 2-D
        ax.scatter(fx, fy, s=40, c="tab:red", zorder=3,
                   label=f"frontier over all objectives ({len(front)})")
        if baselines:
            bx, by = xy(baselines)
            ax.scatter(bx, by, s=90, marker="*", c="black", zorder=4, label="baseline")
            for p, px, py in zip(baselines, bx, by, strict=True):
                ax.annotate(p.label or "baseline", (px, py), textcoords="offset points",
                            xytext=(6, 4), fontsize=8)
        ax.set_xlabel(describe(x))
        ax.set_ylabel(describe(y) if y else "generation")
        where = f" on {report.device}" if report.device else ""
        infeasible = len(report.points) - len(feasible)
        ax.set_title(f"{report.run}{where}: {len(report.points)} candidates, "
                     f"{infeasible} infeasible")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out

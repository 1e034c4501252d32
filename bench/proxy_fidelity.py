"""Proxy fidelity: does the proxy rank architectures as a 2x wider, >=10x longer text training does?

A zoo of 17 six-layer genomes in five families (LFM2 conv/attention hybrids with 1-3 attention
blocks, sliding-window and MoE variants; pure attention; pure short conv at three FFN widths; SSM:
pure Mamba-2 and SSM/attention hybrids; linear attention and its hybrids), each derived in code
from a reference genome in genomes/ and scaled with ``star.genome.scale_spec`` as the search does.

- **proxy** recipes (``RECIPES``): the genome at the search's default proxy scale (d_model 64, head
  width 16, byte vocabulary), every candidate component trained once per seed (text on the bundled
  English corpus and the MAD tasks), CPU seconds recorded per component. Objectives (which
  components, which weights, accuracy or loss) are then scored offline from those runs, so one
  run prices and rates every weighting.
- **reference**: the genome at d_model 128 (head width 32, BPE vocabulary 1024) trained on the
  same English text only, with >= 10x the tokens of the default proxy; its validation loss is
  the ground truth the proxy should rank like.

Prints Spearman and Kendall correlations between each objective and the reference, overall and
per family, with bootstrap intervals over genomes and proxy seeds (``star.proxy.fidelity``), the
proxy CPU seconds per genome, the fidelity-vs-CPU Pareto front, and the cheapest objective whose
correlation is within the best one's interval. Runs on the local ProxyPool (or Ray via
``--ray-address``). Results are cached in ``--out`` (JSON lines), so an interrupted run resumes
and ``--analyse`` reprints without training.

Recipe ``s20t`` (the text component of ``s20ti``) is exactly the ``ProxyConfig`` defaults.

Quick check (~3 CPU-minutes): ``python bench/proxy_fidelity.py --quick``
README figures (17 genomes, 2 proxy and 2 reference seeds; ~30 CPU-minutes):
``nice -n 15 python bench/proxy_fidelity.py --ref-seeds 2 --recipes
s20t,s20t-sp,s20t-fp32,s40t,s40t-sp,s20ti,s20ti-sp,s10t,s60ti,s20t-b8,s20t-seq64,s20t-w128``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from star.genome import Scale, load_genome, scale_spec  # noqa: E402
from star.genome.spec import (  # noqa: E402
    ArchSpec,
    AttentionSpec,
    FFNSpec,
    LayerSpec,
    TokenMixer,
)
from star.proxy.config import ProxyConfig, TextSettings  # noqa: E402
from star.proxy.fidelity import Interval, kendall, pareto_front, rank_fidelity, spearman  # noqa: E402
from star.proxy.result import ProxyResult, aggregate  # noqa: E402

GENOMES = ROOT / "genomes"
PROXY_SCALE = Scale(d_model=64, head_dim=16, vocab_size=256, max_experts=4, context_length=2048)
REF_SCALE = Scale(d_model=128, head_dim=32, vocab_size=1024, max_experts=8, context_length=2048)
WINDOW = 32  # sliding window (tokens) of the SWA variants: shorter than every trained sequence
MAD = ("in_context_recall", "selective_copying", "compression", "memorization")
DEFAULT_OUT = Path(os.environ.get("STAR_CACHE_DIR", Path.home() / ".cache" / "star-lab")) / (
    "bench/proxy_fidelity.jsonl"
)


# ---- the zoo ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    spec: ArchSpec  # deployment scale (the reference genome's width)


def _genome(name: str) -> ArchSpec:
    return load_genome(GENOMES / f"{name}.yaml").to_spec()


def _build(base: ArchSpec, name: str, pattern: Iterable[LayerSpec]) -> ArchSpec:
    layers = tuple(replace(layer, index=i) for i, layer in enumerate(pattern))
    return replace(base, name=name, layers=layers)


def _ffn(layer: LayerSpec, ffn_dim: int) -> LayerSpec:
    assert isinstance(layer.channel, FFNSpec)
    return replace(layer, channel=replace(layer.channel, ffn_dim=ffn_dim))


def _swa(layer: LayerSpec) -> LayerSpec:
    assert isinstance(layer.mixer, AttentionSpec)
    return replace(layer, mixer=replace(layer.mixer, window=WINDOW, kind=TokenMixer.SWA))


def zoo() -> list[Entry]:
    """17 genomes, 5 families, 6 layers each (C conv, A attention, S SSM, L linear attention)."""
    lfm2 = _genome("lfm2-350m")
    conv, attn = lfm2.layers[0], lfm2.layers[2]
    swa = _swa(attn)
    moe = _genome("lfm2-8b-a1b")
    llama = _genome("llama-3.2-1b")
    hyb = _genome("hybrid-ssm-attn-300m")
    ssm, ssm_attn = hyb.layers[0], hyb.layers[5]
    mamba = _genome("mamba2-370m")
    lin = _genome("hybrid-linear-attn-350m")
    lattn, lin_attn = lin.layers[0], lin.layers[3]

    def seq(code: str, table: dict[str, LayerSpec]) -> list[LayerSpec]:
        return [table[c] for c in code]

    ca = {"C": conv, "A": attn, "W": swa}
    sa = {"S": ssm, "A": ssm_attn}
    out = [
        Entry("lfm2-1attn", "lfm2", _build(lfm2, "lfm2-1attn", seq("CCACCC", ca))),
        Entry("lfm2-2attn", "lfm2", _build(lfm2, "lfm2-2attn", seq("CCACCA", ca))),
        Entry("lfm2-3attn", "lfm2", _build(lfm2, "lfm2-3attn", seq("CACACA", ca))),
        Entry("lfm2-swa", "lfm2", _build(lfm2, "lfm2-swa", seq("CCWCCW", ca))),
        Entry("lfm2moe", "lfm2", _build(moe, "lfm2moe", moe.layers[:6])),
        Entry("llama", "attention", _build(llama, "llama", llama.layers[:6])),
        Entry("attn-qknorm", "attention", _build(lfm2, "attn-qknorm", seq("AAAAAA", ca))),
        Entry("swa-only", "attention", _build(lfm2, "swa-only", seq("WWWWWW", ca))),
        Entry("conv-ffn2048", "shortconv", _build(lfm2, "conv-ffn2048", [_ffn(conv, 2048)] * 6)),
        Entry("conv", "shortconv", _build(lfm2, "conv", [conv] * 6)),
        Entry("conv-ffn9216", "shortconv", _build(lfm2, "conv-ffn9216", [_ffn(conv, 9216)] * 6)),
        Entry("mamba2", "ssm", _build(mamba, "mamba2", mamba.layers[:6])),
        Entry("ssm-1attn", "ssm", _build(hyb, "ssm-1attn", seq("SSSSSA", sa))),
        Entry("ssm-2attn", "ssm", _build(hyb, "ssm-2attn", seq("SSASSA", sa))),
        Entry("linattn", "linear_attention", _build(lin, "linattn", [lattn] * 6)),
        Entry("linattn-1attn", "linear_attention",
              _build(lin, "linattn-1attn", seq("LLLLLA", {"L": lattn, "A": lin_attn}))),
        Entry("linattn-2attn", "linear_attention",
              _build(lin, "linattn-2attn", seq("LLALLA", {"L": lattn, "A": lin_attn}))),
    ]
    return out


# ---- recipes -------------------------------------------------------------------------------------


def _proxy(
    steps: int,
    tasks: tuple[str, ...],
    lr: float = 3e-3,
    parametrization: str = "mup",
    amp: bool = True,
) -> ProxyConfig:
    return ProxyConfig.model_validate({
        "tasks": tasks, "scale": 0.1, "steps": steps, "batch_size": 16, "eval_batch_size": 128,
        "lr": lr, "warmup_frac": 0.1, "threads": 1, "device": "cpu",
        "parametrization": parametrization, "amp": amp,
        "task_params": {t: {"n_test": 128} for t in tasks if t != "text"},
        "text": TextSettings(max_bytes=1 << 20, seq_len=64, max_val_windows=128),
    })


RECIPES: dict[str, ProxyConfig] = {
    "s10t": _proxy(10, ("text",)),
    "s20t": _proxy(20, ("text",)),
    "s40t": _proxy(40, ("text",)),
    "s20t-lr1e-3": _proxy(20, ("text",), lr=1e-3),
    "s20t-lr1e-2": _proxy(20, ("text",), lr=1e-2),
    # the standard parametrization (one lr, N(0, 0.02) everywhere), the default before muP
    "s20t-sp": _proxy(20, ("text",), parametrization="standard"),
    "s40t-sp": _proxy(40, ("text",), parametrization="standard"),
    "s20ti-sp": _proxy(20, ("text", "in_context_recall"), parametrization="standard"),
    # fp32 throughout: does bf16 autocast (the default where the CPU has native bf16) rank alike?
    "s20t-fp32": _proxy(20, ("text",), amp=False),
    # the other knobs of the recipe: half the batch, 64-token windows (scale 1.0 keeps the text's
    # window and its 1 MiB), and twice the width (RECIPE_SCALES)
    "s20t-b8": _proxy(20, ("text",)).model_copy(update={"batch_size": 8}),
    "s20t-seq64": _proxy(20, ("text",)).model_copy(update={"scale": 1.0}),
    "s20t-w128": _proxy(20, ("text",)),
    "s20ti": _proxy(20, ("text", "in_context_recall")),
    "s20": _proxy(20, ("text", *MAD)),
    "s60": _proxy(60, ("text", *MAD)),
    "s60ti": _proxy(60, ("text", "in_context_recall")),
    "s60-lr1e-3": _proxy(60, ("text", "in_context_recall"), lr=1e-3),
    "s150": _proxy(150, ("text", "in_context_recall")),
}
QUICK_RECIPES = ("s20", "s60")
# Recipes trained at another width than PROXY_SCALE
RECIPE_SCALES: dict[str, Scale] = {
    "s20t-w128": replace(PROXY_SCALE, d_model=128, head_dim=32),
}


def reference_config(steps: int) -> ProxyConfig:
    """Text only, 128-token windows, batch 16: ``steps * 2048`` training tokens.

    Trained in the standard parametrization (as HF trains LFM2), not the proxy's muP: the ground
    truth does not share the choice it judges.
    """
    return ProxyConfig.model_validate({
        "tasks": ("text",), "scale": 1.0, "steps": steps, "batch_size": 16, "eval_batch_size": 64,
        "lr": 2e-3, "warmup_frac": 0.05, "weight_decay": 0.1, "threads": 1, "device": "cpu",
        "parametrization": "standard",
        "text": TextSettings(max_bytes=6 << 20, seq_len=128, max_val_windows=256),
    })


# ---- running -------------------------------------------------------------------------------------


def _key(kind: str, recipe: str, genome: str, seed: int) -> str:
    return f"{kind}|{recipe}|{genome}|{seed}"


def load_records(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out[rec["key"]] = rec
    return out


def run(args: argparse.Namespace, entries: list[Entry], recipes: list[str]) -> dict[str, dict]:
    from star.proxy.pool import ProxyJob, ProxyPool

    done = load_records(args.out)
    ref_cfg = reference_config(args.ref_steps)
    todo: list[tuple[str, str, Entry, int, ProxyConfig, ArchSpec]] = []
    for seed in range(max(args.proxy_seeds, args.ref_seeds)):
        for e in entries:
            if seed < args.proxy_seeds:
                for r in recipes:
                    width = RECIPE_SCALES.get(r, PROXY_SCALE)
                    todo.append(("proxy", r, e, seed, RECIPES[r], scale_spec(e.spec, width)))
            if seed < args.ref_seeds:
                todo.append(("ref", f"ref{args.ref_steps}", e, seed, ref_cfg,
                             scale_spec(e.spec, REF_SCALE)))
    todo = [t for t in todo if _key(t[0], t[1], t[2].name, t[3]) not in done]
    print(f"{len(done)} cached, {len(todo)} to train ({args.workers} workers)", flush=True)
    pool_cfg = ProxyConfig(workers=args.workers, threads=1, ray_address=args.ray_address)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    chunk = 4 * args.workers
    start = time.perf_counter()
    with ProxyPool(pool_cfg) as pool:
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            jobs = [ProxyJob(spec, seed=seed, name=f"{kind}:{r}:{e.name}", config=cfg)
                    for kind, r, e, seed, cfg, spec in part]
            results = pool.run(jobs)
            with args.out.open("a") as f:
                for (kind, r, e, seed, _, _), res in zip(part, results, strict=True):
                    rec = {"key": _key(kind, r, e.name, seed), "kind": kind, "recipe": r,
                           "genome": e.name, "family": e.family, "seed": seed,
                           "result": res.model_dump(mode="json")}
                    done[rec["key"]] = rec
                    f.write(json.dumps(rec) + "\n")
                    if res.error:
                        print(f"  FAILED {rec['key']}: {res.error}", flush=True)
            print(f"  {min(i + chunk, len(todo))}/{len(todo)} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    return done


# ---- analysis ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """A proxy objective: a recipe's components, their weights, and accuracy or loss scoring."""

    recipe: str
    weights: tuple[tuple[str, float], ...]
    score: str = "accuracy"

    @property
    def label(self) -> str:
        parts = "+".join(f"{w:.2g}*{n}" if w != 1 else n for n, w in self.weights)
        return f"{self.recipe}:{parts}" + (":loss" if self.score == "loss" else "")

    def components(self) -> set[str]:
        return {n for n, w in self.weights if w > 0}


def objectives(recipe: str, tasks: tuple[str, ...]) -> list[Objective]:
    mad = [t for t in tasks if t != "text"]
    out: list[Objective] = []
    for t in tasks:
        out.append(Objective(recipe, ((t, 1.0),)))
        if t != "text":
            out.append(Objective(recipe, ((t, 1.0),), "loss"))
    if "text" in tasks and "in_context_recall" in tasks:
        for score in ("accuracy", "loss"):
            out.append(Objective(recipe, (("text", 1.0), ("in_context_recall", 1.0)), score))
            out.append(Objective(recipe, (("text", 3.0), ("in_context_recall", 1.0)), score))
    recall = [t for t in mad if t != "memorization"]
    if len(recall) > 1:
        for score in ("accuracy", "loss"):
            out.append(Objective(recipe, tuple((t, 1.0) for t in recall), score))
            if "text" in tasks:  # the pre-#10 aggregate: MAD block and text count equally
                out.append(Objective(recipe, (("text", 1.0),
                                              *((t, 1.0 / len(recall)) for t in recall)), score))
    return out


def objective_score(rec: dict, obj: Objective) -> tuple[float, float]:
    """(quality_loss under ``obj``, CPU seconds of its components) of one proxy record."""
    res = ProxyResult.model_validate(rec["result"])
    if res.error:
        return math.nan, math.nan
    names = obj.components()
    tasks = {k: v for k, v in res.tasks.items() if k in names}
    text = res.text if "text" in names else None
    if len(tasks) + (text is not None) != len(names):
        return math.nan, math.nan
    agg = aggregate(tasks, text, dict(obj.weights), obj.score)
    cpu = sum(m.cpu_time_s for m in tasks.values()) + (text.cpu_time_s if text else 0.0)
    return (agg.quality_loss if agg.quality_loss is not None else math.nan), cpu


def _fmt(iv: Interval) -> str:
    return "   n/a" if math.isnan(iv.value) else str(iv)


def analyse(records: dict[str, dict], entries: list[Entry], recipes: list[str],
            ref_recipe: str, n_boot: int) -> None:
    names = [e.name for e in entries]
    fam = {e.name: e.family for e in entries}
    refs = [r for r in records.values() if r["kind"] == "ref" and r["recipe"] == ref_recipe]
    ref_loss: dict[str, list[float]] = {}
    ref_cpu: list[float] = []
    for r in refs:
        res = ProxyResult.model_validate(r["result"])
        if res.text is not None and not res.error:
            ref_loss.setdefault(r["genome"], []).append(res.text.val_loss)
            ref_cpu.append(res.cpu_time_s)
    names = [n for n in names if n in ref_loss]
    if len(names) < 4:
        print(f"only {len(names)} genomes have a reference result: nothing to correlate")
        return
    reference = np.array([statistics.mean(ref_loss[n]) for n in names])
    some = next(iter(refs))["result"]
    print(f"\nreference {ref_recipe}: d_model {REF_SCALE.d_model}, vocab {REF_SCALE.vocab_size}, "
          f"{some['text']['tokens']:,} training tokens, {some['text']['val_tokens']:,} validation "
          f"tokens; median CPU {statistics.median(ref_cpu):.0f} s/genome")
    print(f"{'genome':<15} {'family':<17} {'ref val loss':>12} {'ppl':>7}  "
          "proxy-params  ref-params")
    params = {}
    for r in records.values():
        params[(r["kind"], r["genome"])] = r["result"].get("n_params", 0)
    for n, v in zip(names, reference, strict=True):
        spread = f"±{statistics.stdev(ref_loss[n]):.3f}" if len(ref_loss[n]) > 1 else ""
        print(f"{n:<15} {fam[n]:<17} {v:>12.4f} {math.exp(v):>7.2f}  "
              f"{params.get(('proxy', n), 0):>12,} {params.get(('ref', n), 0):>11,} {spread}")
    multi = [n for n in names if len(ref_loss[n]) > 1]
    if len(multi) >= 4:
        a = np.array([ref_loss[n][0] for n in multi])
        b = np.array([ref_loss[n][1] for n in multi])
        print(f"reference seed 0 vs seed 1 (ceiling of any proxy): Spearman "
              f"{spearman(a, b):+.2f}, Kendall {kendall(a, b):+.2f} over {len(multi)} genomes")

    defaults = ProxyConfig(device="cpu", threads=1).model_dump()
    same = [r for r in recipes if r not in RECIPE_SCALES and RECIPES[r].model_dump(
        exclude={"task_params"}) == {
        k: v for k, v in defaults.items() if k != "task_params"}]
    print(f"recipes equal to the ProxyConfig defaults: {same or 'none'}")
    families = sorted({fam[n] for n in names})
    rows = []
    for recipe in recipes:
        tasks = tuple(RECIPES[recipe].tasks)
        for obj in objectives(recipe, tasks):
            seeds = sorted({r["seed"] for r in records.values()
                            if r["kind"] == "proxy" and r["recipe"] == recipe})
            if not seeds:
                continue
            scores = np.full((len(names), len(seeds)), np.nan)
            cpus: list[float] = []
            for i, n in enumerate(names):
                for j, s in enumerate(seeds):
                    rec = records.get(_key("proxy", recipe, n, s))
                    if rec is not None:
                        scores[i, j], cpu = objective_score(rec, obj)
                        if math.isfinite(cpu):
                            cpus.append(cpu)
            ok = np.isfinite(scores).any(axis=1)
            if ok.sum() < 4 or not cpus:
                continue
            rho = rank_fidelity(scores[ok], reference[ok], spearman, n_boot=n_boot)
            tau = rank_fidelity(scores[ok], reference[ok], kendall, n_boot=n_boot)
            per_fam = {}
            for f in families:
                idx = np.array([fam[n] == f for n in names]) & ok
                if idx.sum() >= 3:
                    per_fam[f] = rank_fidelity(scores[idx], reference[idx], spearman,
                                               n_boot=n_boot // 4)
            rows.append((obj, statistics.mean(cpus), rho, tau, per_fam))

    rows.sort(key=lambda r: r[1])
    print(f"\nproxy objectives vs reference ({len(names)} genomes; point = mean over proxy seeds "
          f"of single-seed correlation; [90% bootstrap over genomes x seeds])")
    print(f"{'objective':<62} {'CPU s/genome':>12}  {'Spearman':<22} {'Kendall':<22}")
    for obj, cpu, rho, tau, _ in rows:
        print(f"{obj.label:<62} {cpu:>12.1f}  {_fmt(rho):<22} {_fmt(tau):<22}")
    print("\nwithin families (Spearman, n = genomes in the family):")
    print(f"{'objective':<62} " + " ".join(f"{f[:16]:<22}" for f in families))
    for obj, _, _, _, per_fam in rows:
        cells = [(_fmt(per_fam[f]) + f" n={per_fam[f].n}") if f in per_fam else "-"
                 for f in families]
        print(f"{obj.label:<62} " + " ".join(f"{c:<22}" for c in cells))

    points = [(cpu, rho.value if math.isfinite(rho.value) else -1.0) for _, cpu, rho, _, _ in rows]
    front = pareto_front(points)
    print("\nfidelity vs CPU, Pareto front (cheapest first):")
    for i in front:
        obj, cpu, rho, tau, _ = rows[i]
        print(f"  {cpu:>7.1f} CPU-s/genome  Spearman {_fmt(rho)}  Kendall {_fmt(tau)}  {obj.label}")
    best = max(rows, key=lambda r: r[2].value if math.isfinite(r[2].value) else -1.0)
    pick = min((r for r in rows if r[2].value >= best[2].low), key=lambda r: r[1])
    print(f"\nbest: {best[0].label} (Spearman {_fmt(best[2])}); cheapest within its interval: "
          f"{pick[0].label} at {pick[1]:.1f} CPU-s/genome (Spearman {_fmt(pick[2])}, "
          f"Kendall {_fmt(pick[3])})")


def agreement(records: dict[str, dict], entries: list[Entry], pairs: list[str]) -> None:
    """Spearman/Kendall between two recipes' text scores (mean over seeds), for each ``a:b``.

    Answers "does this choice change the ranking?" (bf16 vs fp32, muP vs standard) directly,
    without going through the reference.
    """
    def means(recipe: str) -> dict[str, float]:
        obj = Objective(recipe, (("text", 1.0),))
        out: dict[str, float] = {}
        for e in entries:
            vals = [objective_score(r, obj)[0] for r in records.values()
                    if r["kind"] == "proxy" and r["recipe"] == recipe and r["genome"] == e.name]
            vals = [v for v in vals if math.isfinite(v)]
            if vals:
                out[e.name] = statistics.mean(vals)
        return out

    for pair in pairs:
        a, _, b = pair.partition(":")
        ma, mb = means(a), means(b)
        common = [n for n in ma if n in mb]
        if len(common) < 4:
            continue
        x = np.array([ma[n] for n in common])
        y = np.array([mb[n] for n in common])
        print(f"agreement {a} vs {b} ({len(common)} genomes, text loss, mean over seeds): "
              f"Spearman {spearman(x, y):+.2f}, Kendall {kendall(x, y):+.2f}, "
              f"mean |diff| {float(np.mean(np.abs(x - y))):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="6 genomes, 1 seed, recipes s20/s60, a 100-step reference")
    ap.add_argument("--genomes", type=int, default=0, help="first N genomes of the zoo (0 = all)")
    ap.add_argument("--recipes", default=",".join(RECIPES), help=f"of {', '.join(RECIPES)}")
    ap.add_argument("--proxy-seeds", type=int, default=2)
    ap.add_argument("--ref-seeds", type=int, default=1)
    ap.add_argument("--ref-steps", type=int, default=120,
                    help="reference steps of 2,048 tokens (120: 10.7x the default proxy's tokens)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ray-address", default=None)
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--analyse", action="store_true", help="print from --out without training")
    ap.add_argument("--agree", default="s20t:s20t-fp32,s20t:s20t-sp",
                    help="recipe pairs a:b whose rankings are compared with each other")
    args = ap.parse_args()
    entries = zoo()
    recipes = [r for r in args.recipes.split(",") if r]
    if args.quick:
        entries = [entries[i] for i in (0, 2, 5, 9, 11, 14)]
        recipes, args.proxy_seeds, args.ref_seeds = list(QUICK_RECIPES), 1, 1
        args.ref_steps = min(args.ref_steps, 100)
        if args.out == DEFAULT_OUT:
            args.out = DEFAULT_OUT.with_name("proxy_fidelity_quick.jsonl")
    if args.genomes:
        entries = entries[: args.genomes]
    unknown = set(recipes) - set(RECIPES)
    if unknown:
        ap.error(f"unknown recipes {sorted(unknown)}")
    records = load_records(args.out) if args.analyse else run(args, entries, recipes)
    analyse(records, entries, recipes, f"ref{args.ref_steps}", args.boot)
    print()
    agreement(records, entries, [p for p in args.agree.split(",") if p])


if __name__ == "__main__":
    main()

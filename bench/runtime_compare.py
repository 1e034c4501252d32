"""ExecuTorch vs llama.cpp on the genomes both can run: TTFT and decode ratios, one run, medians.

For each reference genome (LFM2-350M, the calibration point; a qwen3-like all-attention stack
with QK-norm; the granitehybrid-like Mamba-2 + attention hybrid), the same random weights are
exported twice per quantization class and measured at the same contexts and thread count:

    fp32   ExecuTorch float32 (XNNPACK)          vs  llama.cpp F32 weights
    8da4w  int8 dynamic activations, int4 w/g32  vs  llama.cpp Q4_0 (int4 w/g32, Q8_0 activations)

No flash attention on either side. The KV cache is float32 in the .pte and F16 in llama.cpp
(this llama-bench refuses ``-ctk f32``; F16 is also what llama.cpp ships by default).
ExecuTorch keeps the embedding table in float32 under 8da4w (the head, which shares it, is
int4); llama.cpp Q4_0 quantizes it, so files and RSS differ by that table.

The two runtimes alternate per context so that load from other processes hits both alike; the
1-minute load average is recorded before and after every measurement (the box is "quiet" when
it stays below half the cores). One thread by default: on an oversubscribed machine llama.cpp's
spinning thread barriers collapse (seen here: LFM2-350M Q4_0 decode 25 ms/token on 1 thread,
400 ms/token on 2 threads under a load of 9 on 2 cores), which would measure the scheduler.
Not a test: ``python bench/runtime_compare.py [--out result.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device_agents.executorch import PteBenchSettings, run_pte_bench  # noqa: E402
from device_agents.llamacpp.commands import BenchSettings  # noqa: E402
from device_agents.llamacpp.local import run_local_bench  # noqa: E402
from device_agents.schemas import BenchReport, ContextMeasurement  # noqa: E402
from star.genome import Scale, load_genome, scale_spec  # noqa: E402
from star.genome.spec import ArchSpec, AttentionSpec, FFNSpec, LayerSpec, Norm  # noqa: E402

PAIRS = {"fp32": "f32", "8da4w": "q4_0"}  # ExecuTorch quant -> llama.cpp weight type


def qwen3_like() -> ArchSpec:
    """LFM2-350M's width and depth, every layer GQA attention with QK-norm (llama.cpp qwen3)."""
    layers = tuple(
        LayerSpec(index=i, operator=0, mixer=AttentionSpec(16, 8, 64, qk_norm=True),
                  channel=FFNSpec(4608), norm=Norm.RMSNORM)
        for i in range(16)
    )
    return ArchSpec(name="qwen3-like-350m", d_model=1024, vocab_size=65536, tie_embeddings=True,
                    rope_theta=1e6, norm_eps=1e-5, context_length=32768, layers=layers)


def reference_specs(d_model: int | None) -> dict[str, ArchSpec]:
    specs = {
        "lfm2": load_genome(ROOT / "genomes/lfm2-350m.yaml").to_spec(),
        "qwen3": qwen3_like(),
        "granitehybrid": load_genome(ROOT / "genomes/hybrid-ssm-attn-300m.yaml").to_spec(),
    }
    if d_model is not None:  # a smaller deploy scale, same architecture
        specs = {k: scale_spec(s, Scale(d_model=d_model, head_dim=64)) for k, s in specs.items()}
    return specs


def load_1m() -> float:
    return os.getloadavg()[0]


def export_all(name: str, spec: ArchSpec, quants: list[str], max_context: int,
               work: Path) -> dict[str, Path]:
    """GGUF and .pte files of one genome (same seed-0 weights), reused when already there."""
    import torch

    from star.export import export_gguf
    from star.export.executorch import PteOptions, export_pte
    from star.nn import StarModel

    files: dict[str, Path] = {}
    for quant in quants:
        gguf = work / f"{name}-{PAIRS[quant]}.gguf"
        pte = work / f"{name}-{quant}-c{max_context}.pte"
        files[f"gguf:{quant}"], files[f"pte:{quant}"] = gguf, pte
        if not gguf.exists():
            model = StarModel(spec, device="cpu", dtype=torch.float32, seed=0)
            export_gguf(spec, model, gguf, quant=PAIRS[quant])
            print(f"  wrote {gguf.name}", flush=True)
        if not pte.exists():
            model = StarModel(spec, device="cpu", dtype=torch.float32, seed=0)
            options = PteOptions.for_spec(spec, quant=quant, max_context=max_context)
            started = time.monotonic()
            result = export_pte(model, pte, options, in_place=True)
            print(f"  wrote {pte.name} in {time.monotonic() - started:.0f} s "
                  f"(read-back error {result.max_abs_error:.2g} of {result.logits_scale:.2g})",
                  flush=True)
            del model
    return files


def figures(m: ContextMeasurement) -> dict[str, Any]:
    if m.error or m.oom or m.ttft_ms is None or m.decode_ms_per_token is None:
        return {"error": m.error or "oom"}
    return {
        "ttft_ms": m.ttft_ms.median, "ttft_cv": round(m.ttft_ms.cv, 3),
        "decode_ms": m.decode_ms_per_token.median,
        "decode_cv": round(m.decode_ms_per_token.cv, 3),
        "peak_rss_mib": round((m.peak_rss_bytes or 0) / 2**20, 1),
    }  # fmt: skip


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from star.runtime import ensure_runtime
    from star.runtime.executorch import ensure_executorch_runner

    llama = ensure_runtime()
    runner = ensure_executorch_runner()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    contexts = [int(c) for c in args.contexts.split(",")]
    quants = args.quants.split(",")
    max_context = max(contexts) + args.n_gen
    max_context = -(-max_context // 128) * 128  # a whole number of prefill chunks
    specs = reference_specs(args.d_model)
    wanted = args.models.split(",")
    rows: list[dict[str, Any]] = []
    loads: list[float] = []
    et_settings = PteBenchSettings(threads=args.threads, n_gen=args.n_gen,
                                   repetitions=args.reps, warmup=1)
    for name in wanted:
        spec = specs[name]
        spec = replace(spec, context_length=max(spec.context_length, max_context))
        print(f"{name}: exporting", flush=True)
        files = export_all(name, spec, quants, max_context, work)
        for quant in quants:
            lc_settings = BenchSettings(threads=args.threads, n_gen=args.n_gen,
                                        repetitions=args.reps, flash_attn=False,
                                        cache_type_k="f16", cache_type_v="f16")
            for i, context in enumerate(contexts):
                row: dict[str, Any] = {"model": name, "quant": quant,
                                       "llama_cpp_type": PAIRS[quant], "context": context}
                order = ["executorch", "llama.cpp"] if i % 2 == 0 else ["llama.cpp", "executorch"]
                for runtime in order:
                    before = load_1m()
                    report: BenchReport
                    if runtime == "executorch":
                        report = run_pte_bench(files[f"pte:{quant}"], [context], et_settings,
                                               runner.runner, timeout_s=args.timeout)
                    else:
                        report = run_local_bench(files[f"gguf:{quant}"], [context], lc_settings,
                                                 llama.llama_bench, commit=llama.commit,
                                                 timeout_s=args.timeout)
                    after = load_1m()
                    loads += [before, after]
                    row[runtime] = figures(report.contexts[0]) | {
                        "load_before": round(before, 2), "load_after": round(after, 2),
                        "file_mib": round(report.model_bytes / 2**20, 1),
                    }  # fmt: skip
                et, lc = row["executorch"], row["llama.cpp"]
                if "error" not in et and "error" not in lc:
                    row["ttft_ratio"] = round(et["ttft_ms"] / lc["ttft_ms"], 3)
                    row["decode_ratio"] = round(et["decode_ms"] / lc["decode_ms"], 3)
                    row["rss_ratio"] = round(et["peak_rss_mib"] / lc["peak_rss_mib"], 3)
                rows.append(row)
                print(json.dumps(row), flush=True)
    cores = len(os.sched_getaffinity(0))
    return {
        "threads": args.threads, "reps": args.reps, "n_gen": args.n_gen, "cores": cores,
        "contexts": contexts, "max_context": max_context, "llama_cpp_commit": llama.commit,
        "executorch": runner.runtime_version, "d_model": args.d_model,
        "load_1m_median": round(statistics.median(loads), 2) if loads else None,
        "load_1m_max": round(max(loads), 2) if loads else None,
        "quiet": bool(loads) and max(loads) < cores / 2,
        "rows": rows,
    }  # fmt: skip


def print_table(result: dict[str, Any]) -> None:
    print(f"\nExecuTorch {result['executorch']} / llama.cpp {result['llama_cpp_commit']}, "
          f"{result['threads']} threads, medians of {result['reps']} reps, "
          f"decode {result['n_gen']} tokens at depth C; box quiet: {result['quiet']} "
          f"(1-min load median {result['load_1m_median']}, max {result['load_1m_max']} on "
          f"{result['cores']} cores)")
    print(f"{'model':15}{'quant':>7}{'C':>6}{'TTFT ET ms':>12}{'TTFT lc ms':>12}{'ratio':>7}"
          f"{'dec ET ms':>11}{'dec lc ms':>11}{'ratio':>7}{'RSS ET':>8}{'RSS lc':>8}")
    for r in result["rows"]:
        et, lc = r["executorch"], r["llama.cpp"]
        if "ttft_ratio" not in r:
            print(f"{r['model']:15}{r['quant']:>7}{r['context']:>6}  failed: "
                  f"{et.get('error') or lc.get('error')}")
            continue
        print(f"{r['model']:15}{r['quant']:>7}{r['context']:>6}{et['ttft_ms']:>12.1f}"
              f"{lc['ttft_ms']:>12.1f}{r['ttft_ratio']:>7.2f}{et['decode_ms']:>11.2f}"
              f"{lc['decode_ms']:>11.2f}{r['decode_ratio']:>7.2f}{et['peak_rss_mib']:>8.0f}"
              f"{lc['peak_rss_mib']:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lfm2,qwen3,granitehybrid")
    parser.add_argument("--quants", default="8da4w,fp32")
    parser.add_argument("--contexts", default="512,2048")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n-gen", type=int, default=16)
    parser.add_argument("--d-model", type=int, default=None,
                        help="scale the genomes to this width (default: their deploy size)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--work", default=str(Path.home() / ".cache/star-lab/runtime-compare"))
    parser.add_argument("--out", default=None, help="write the result JSON here")
    args = parser.parse_args()
    result = measure(args)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print_table(result)


if __name__ == "__main__":
    main()

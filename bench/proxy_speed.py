"""Proxy training speed: optimizer steps/s and tokens/s of a genome at the TINY and PROXY widths.

Times the real ``train_proxy`` loop (AdamW, cosine, clipping, deterministic algorithms) on one
MAD task whose sequence length and batch are given, after a short warm-up run, so the figure is
what a proxy evaluation costs per step. Not a test:
``python bench/proxy_speed.py [--genome PATH] [--threads N] [--batch B] [--seq T] [--steps S]``
Prints one JSON line per (scale, batch, seq).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genome", type=Path, default=ROOT / "genomes" / "lfm2-350m.yaml")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--seq", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    from star.genome import PROXY, TINY, load_genome, scale_spec
    from star.proxy import ProxyConfig, TaskParams
    from star.proxy.train import train_proxy

    torch.set_num_threads(args.threads)
    full = load_genome(args.genome).to_spec()
    for label, scale in (("tiny", TINY), ("proxy", PROXY)):
        spec = scale_spec(full, scale)
        for batch in args.batch:
            for seq in args.seq:
                params = TaskParams(seq_len=seq, n_train=max(batch, 256), n_test=batch)
                cfg = ProxyConfig(tasks=("in_context_recall",), batch_size=batch,
                                  task_params={"in_context_recall": params}, device=args.device,
                                  threads=args.threads, eval_batch_size=batch)
                train_proxy(spec, cfg.model_copy(update={"steps": 2}), seed=0)  # warm-up
                r = train_proxy(spec, cfg.model_copy(update={"steps": args.steps}), seed=0)
                m = r.tasks["in_context_recall"]
                print(json.dumps({
                    "genome": args.genome.stem, "scale": label, "d_model": spec.d_model,
                    "params": r.n_params, "batch": batch, "seq": seq, "threads": args.threads,
                    "device": r.device, "steps_per_s": round(m.steps / m.wall_time_s, 3),
                    "tokens_per_s": round(m.tokens / m.wall_time_s), "cpu": platform.processor()
                    or platform.machine(),
                }), flush=True)


if __name__ == "__main__":
    main()

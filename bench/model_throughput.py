"""Forward+backward training throughput: our LFM2-shaped StarModel vs HF ``Lfm2ForCausalLM``.

Same config, same weights (copied from HF), same batch, same process; repetitions alternate
between the models and precisions so that load from other processes hits all alike. Precisions:
``fp32`` (both as shipped) and ``bf16`` (torch CPU autocast, as ``train_proxy`` trains on CPUs
with native bf16 matmul). Prints per-(model, precision) median tokens/s and the ratios ours/HF:
like for like (fp32/fp32, bf16/bf16) and as the proxy trains vs HF as shipped (ours bf16 / HF
fp32). Not a test: ``python bench/model_throughput.py [--preset proxy|wide] [--reps 15]``.

Presets: ``proxy`` (default) is the shape the proxy actually trains: LFM2-350M at the search's
TINY width (d_model 64, head_dim 16, FFN 288, byte vocabulary), 6 layers, 16 windows of 32 tokens,
one thread, as each ProxyPool worker runs. ``wide`` is a 4x wider model (d_model 256, head_dim 64,
FFN 1024, vocabulary 8192, 4 x 256 tokens, torch's default threads) where matrix multiplies
dominate. Any size flag overrides the preset.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from star.export.hf import hf_name_map  # noqa: E402  (the one home of HF names)
from star.export.hf_config import hf_config  # noqa: E402
from star.export.hf_targets import check_hf_exportable  # noqa: E402
from star.genome.spec import ArchSpec, AttentionSpec, FFNSpec, LayerSpec, Norm, ShortConvSpec  # noqa: E402
from star.nn import StarModel  # noqa: E402

PRESETS: dict[str, dict[str, int]] = {
    "proxy": {"d": 64, "layers": 6, "heads": 4, "kv_heads": 2, "ff": 288, "vocab": 256,
              "seq": 32, "batch": 16, "threads": 1},
    "wide": {"d": 256, "layers": 8, "heads": 4, "kv_heads": 2, "ff": 1024, "vocab": 8192,
             "seq": 256, "batch": 4, "threads": 0},
}


def lfm2_layer_types(n_layers: int) -> list[str]:
    """LFM2-350M's pattern scaled down: attention at every third layer from index 2."""
    return ["full_attention" if i % 3 == 2 else "conv" for i in range(n_layers)]


def build_pair(args: argparse.Namespace) -> tuple[torch.nn.Module, StarModel]:
    """HF's model from the config our exporter writes for the spec (the one home of HF config),
    initialised by HF; ours loads the same weights."""
    import transformers

    types = lfm2_layer_types(args.layers)
    hd = args.d // args.heads
    layers = tuple(
        LayerSpec(
            index=i,
            operator=int(kind != "conv"),
            mixer=AttentionSpec(args.heads, args.kv_heads, hd, qk_norm=True)
            if kind != "conv"
            else ShortConvSpec(3),
            channel=FFNSpec(args.ff),
            norm=Norm.RMSNORM,
        )
        for i, kind in enumerate(types)
    )
    spec = ArchSpec("bench", args.d, args.vocab, True, 1e6, 1e-5, 4096, layers)
    config = hf_config(spec, check_hf_exportable(spec), dtype="f32")
    torch.manual_seed(0)
    hf = transformers.Lfm2ForCausalLM(transformers.AutoConfig.for_model(**config))
    ours = StarModel(spec)
    hf_to_ours = hf_name_map(spec)
    state = {hf_to_ours[k]: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    ours.load_state_dict(state, strict=True)
    return hf.train(), ours.train()


def step_seconds(
    model: torch.nn.Module, tokens: torch.Tensor, *, hf: bool, bf16: bool = False
) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=tokens).logits if hf else model(tokens)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten())
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="proxy")
    for flag in ("d", "layers", "heads", "kv-heads", "ff", "vocab", "seq", "batch"):
        parser.add_argument(f"--{flag}", type=int, default=None)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="0 = torch default")
    parser.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    args = parser.parse_args()
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    hf, ours = build_pair(args)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen)
    with torch.no_grad():
        diff = (ours(tokens) - hf(input_ids=tokens).logits).abs().max().item()
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    runs = [(name, p) for p in precisions for name in ("ours", "hf")]
    times: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    for rep in range(args.warmup + args.reps):
        for name, prec in runs:
            model = ours if name == "ours" else hf
            seconds = step_seconds(model, tokens, hf=name == "hf", bf16=prec == "bf16")
            if rep >= args.warmup:
                times[(name, prec)].append(seconds)
    n_tok = args.batch * args.seq
    n_params = sum(p.numel() for p in ours.parameters())
    print(
        f"preset {args.preset}: d={args.d} layers={args.layers} "
        f"({lfm2_layer_types(args.layers).count('conv')} conv) heads={args.heads}/{args.kv_heads} "
        f"ff={args.ff} vocab={args.vocab} "
        f"seq={args.seq} batch={args.batch} params={n_params:,} threads={torch.get_num_threads()}"
        f" reps={args.reps} (interleaved)"
    )
    print(f"forward logits max |ours - hf| = {diff:.2e} (fp32)")
    medians = {}
    for (name, prec), values in times.items():
        medians[(name, prec)] = statistics.median(values)
        spread = ", ".join(f"{v * 1e3:.0f}" for v in values)
        print(
            f"{name:>4} {prec}: median {medians[(name, prec)] * 1e3:.1f} ms/step = "
            f"{n_tok / medians[(name, prec)]:,.0f} tok/s  (steps ms: {spread})"
        )
    for prec in precisions:
        ratio = medians[("hf", prec)] / medians[("ours", prec)]
        print(f"ratio ours/hf {prec} (tokens/s): {ratio:.3f}")
    if len(precisions) == 2:
        ratio = medians[("hf", "fp32")] / medians[("ours", "bf16")]
        print(f"ratio ours bf16 (as the proxy trains) / hf fp32 (as shipped): {ratio:.3f}")

if __name__ == "__main__":
    main()

"""Forward+backward training throughput: our LFM2-shaped StarModel vs HF ``Lfm2ForCausalLM``.

Same config, same weights (copied from HF), same batch, same process; repetitions alternate
between the two models so that load from other processes hits both alike. Prints per-model
median tokens/s and the ratio ours/HF. Not a test: run ``python bench/model_throughput.py``.
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
from star.genome.spec import ArchSpec, AttentionSpec, FFNSpec, LayerSpec, Norm, ShortConvSpec  # noqa: E402
from star.nn import StarModel  # noqa: E402


def lfm2_layer_types(n_layers: int) -> list[str]:
    """LFM2-350M's pattern scaled down: attention at every third layer from index 2."""
    return ["full_attention" if i % 3 == 2 else "conv" for i in range(n_layers)]


def build_pair(args: argparse.Namespace) -> tuple[torch.nn.Module, StarModel]:
    import transformers

    types = lfm2_layer_types(args.layers)
    config = transformers.Lfm2Config(
        vocab_size=args.vocab,
        hidden_size=args.d,
        intermediate_size=args.ff,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        layer_types=types,
        block_auto_adjust_ff_dim=False,
        conv_L_cache=3,
        tie_word_embeddings=True,
        norm_eps=1e-5,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    )
    torch.manual_seed(0)
    hf = transformers.Lfm2ForCausalLM(config)
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
    ours = StarModel(spec)
    hf_to_ours = hf_name_map(spec)
    state = {hf_to_ours[k]: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    ours.load_state_dict(state, strict=True)
    return hf.train(), ours.train()


def step_seconds(model: torch.nn.Module, tokens: torch.Tensor, *, hf: bool) -> float:
    start = time.perf_counter()
    logits = model(input_ids=tokens).logits if hf else model(tokens)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--ff", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="0 = torch default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hf, ours = build_pair(args)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen)
    with torch.no_grad():
        diff = (ours(tokens) - hf(input_ids=tokens).logits).abs().max().item()
    times: dict[str, list[float]] = {"ours": [], "hf": []}
    for rep in range(args.warmup + args.reps):
        for name, model in (("ours", ours), ("hf", hf)):
            seconds = step_seconds(model, tokens, hf=name == "hf")
            if rep >= args.warmup:
                times[name].append(seconds)
    n_tok = args.batch * args.seq
    n_params = sum(p.numel() for p in ours.parameters())
    print(
        f"config: d={args.d} layers={args.layers} ({lfm2_layer_types(args.layers).count('conv')} "
        f"conv) heads={args.heads}/{args.kv_heads} ff={args.ff} vocab={args.vocab} "
        f"seq={args.seq} batch={args.batch} params={n_params:,} threads={torch.get_num_threads()}"
    )
    print(f"forward logits max |ours - hf| = {diff:.2e}")
    medians = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        spread = ", ".join(f"{v * 1e3:.0f}" for v in values)
        print(
            f"{name:>4}: median {medians[name] * 1e3:.1f} ms/step = "
            f"{n_tok / medians[name]:,.0f} tok/s  (steps ms: {spread})"
        )
    print(f"ratio ours/hf (tokens/s): {medians['hf'] / medians['ours']:.3f}")


if __name__ == "__main__":
    main()

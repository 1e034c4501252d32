"""GGUF export speed: ``star.export`` vs HF ``save_pretrained`` + ``convert_hf_to_gguf.py`` +
``llama-quantize``, both to Q4_0, on the same LFM2-350M-shaped random weights.

Ours: ``export_gguf(spec, model, quant="q4_0")`` (gguf-py quantises in-process, one tensor at a
time). Theirs: the same weights copied into HF ``Lfm2ForCausalLM``, ``save_pretrained``
(safetensors), llama.cpp's own ``convert_hf_to_gguf.py --outtype f32`` from the pinned source,
then ``llama-quantize ... Q4_0``. The converter insists on a tokenizer whose pre-tokenizer it
recognises by hash (``get_vocab_base_pre``); a synthetic byte-level BPE made with ``tokenizers``
is not in its table, so when the stock run fails for exactly that reason the converter is re-run
through a wrapper that only answers that lookup (``"lfm2"``), everything else unchanged.

Also reports file sizes and how many Q4_0 tensors the two paths wrote byte-identically (both use
ggml's reference Q4_0 rounding; llama-quantize stores the tied output/embedding as Q6_K, which
gguf-py cannot write). Not a test: ``python bench/export_speed.py [--genome PATH] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from star.export import export_gguf  # noqa: E402
from star.genome import load_genome  # noqa: E402
from star.genome.spec import ArchSpec  # noqa: E402
from star.nn import StarModel  # noqa: E402
from star.runtime import ensure_runtime  # noqa: E402

# Runs convert_hf_to_gguf.py with the pre-tokenizer hash lookup answered (see module doc).
CONVERT_WRAPPER = """
import runpy, sys
sys.path.insert(0, sys.argv[1])
sys.argv = [sys.argv[1] + "/convert_hf_to_gguf.py"] + sys.argv[2:]
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "lfm2"
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def hf_model(spec: ArchSpec, model: StarModel):  # noqa: ANN201
    """HF ``Lfm2ForCausalLM`` holding ``model``'s weights: config and names from star.export.hf
    (their one home), built on the meta device so the weights are not copied twice."""
    import transformers

    from star.export.hf import check_hf_exportable, hf_config, hf_state_dict

    config = dict(hf_config(spec, check_hf_exportable(spec), dtype="f32"))
    config = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(config)
    state = {k: torch.from_numpy(v) for k, v in hf_state_dict(spec, model).items()}
    hf.load_state_dict(state, strict=False, assign=True)
    hf.tie_weights()
    missing = [n for n, p in hf.named_parameters() if p.is_meta]
    if missing:
        raise RuntimeError(f"HF parameters not loaded: {missing[:5]}")
    return hf.eval()


def save_tokenizer(out: Path) -> None:
    """A byte-level BPE (256 tokens, no merges): all convert_hf_to_gguf needs to load one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(out)


def timed(label: str, fn, times: dict[str, float]):  # noqa: ANN001, ANN201
    t0 = time.perf_counter()
    result = fn()
    times[label] = time.perf_counter() - t0
    print(f"  {label:<28} {times[label]:8.1f} s", flush=True)
    return result


def run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def compare_q4(ours: Path, theirs: Path) -> dict[str, object]:
    from gguf import GGUFReader

    a = {t.name: t for t in GGUFReader(ours).tensors}
    b = {t.name: t for t in GGUFReader(theirs).tensors}
    same_type = [n for n in a if n in b and a[n].tensor_type == b[n].tensor_type]
    identical = [
        n for n in same_type if np.array_equal(np.asarray(a[n].data), np.asarray(b[n].data))
    ]
    differ = {
        n: f"{a[n].tensor_type.name} vs {b[n].tensor_type.name}"
        for n in a
        if n in b and a[n].tensor_type != b[n].tensor_type
    }
    return {
        "tensors": len(a),
        "same_type": len(same_type),
        "byte_identical": len(identical),
        "type_differs": differ,
        "only_ours": sorted(a.keys() - b.keys()),
        "only_theirs": sorted(b.keys() - a.keys()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genome", type=Path, default=ROOT / "genomes" / "lfm2-350m.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the files in this dir")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    info = ensure_runtime()
    llama_src = next(info.root.glob("src/*/vendor/llama.cpp"))
    spec = load_genome(args.genome).to_spec()
    print(
        f"model: {spec.name}, {spec.n_layers} layers, d={spec.d_model}, vocab={spec.vocab_size};"
        f" llama.cpp {info.commit[:10]}; {args.threads} threads",
        flush=True,
    )
    model = StarModel(spec, device="cpu", dtype=torch.float32, seed=0).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params:,}", flush=True)

    work = args.keep or Path(tempfile.mkdtemp(prefix="star-export-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ours_t: dict[str, float] = {}
    theirs_t: dict[str, float] = {}

    print("ours (star.export, Q4_0):", flush=True)
    ours = timed(
        "export_gguf q4_0",
        lambda: export_gguf(spec, model, work / "ours-q4_0.gguf", quant="q4_0"),
        ours_t,
    )

    print("HF + convert_hf_to_gguf.py + llama-quantize (Q4_0):", flush=True)
    hf_dir = work / "hf"

    def save() -> None:
        hf = timed("copy weights into HF model", lambda: hf_model(spec, model), theirs_t)
        timed(
            "save_pretrained", lambda: hf.save_pretrained(hf_dir, safe_serialization=True), theirs_t
        )
        save_tokenizer(hf_dir)

    save()
    f32 = work / "hf-f32.gguf"
    env = dict(os.environ, PYTHONPATH=str(llama_src / "gguf-py"))
    cmd = [
        str(llama_src / "convert_hf_to_gguf.py"),
        str(hf_dir),
        "--outtype",
        "f32",
        "--outfile",
        str(f32),
    ]
    stock = timed("convert_hf_to_gguf (stock)", lambda: run([sys.executable, *cmd], env), theirs_t)
    convert_note = "stock converter"
    if stock.returncode != 0:
        reason = [ln for ln in stock.stderr.splitlines() if "Error" in ln or "error" in ln]
        print(f"  stock converter failed: {reason[-1] if reason else stock.stderr[-300:]}")
        del theirs_t["convert_hf_to_gguf (stock)"]
        if "pre-tokenizer was not recognized" not in stock.stderr:
            raise SystemExit("convert_hf_to_gguf.py failed for another reason; see above")
        convert_note = "pre-tokenizer hash lookup answered by a wrapper (synthetic tokenizer)"
        wrapped = timed(
            "convert_hf_to_gguf (wrapped)",
            lambda: run([sys.executable, "-c", CONVERT_WRAPPER, str(llama_src), *cmd[1:]], env),
            theirs_t,
        )
        if wrapped.returncode != 0:
            raise SystemExit(f"wrapped converter failed: {wrapped.stderr[-1500:]}")
    q4 = work / "hf-q4_0.gguf"
    quant = timed(
        "llama-quantize Q4_0",
        lambda: run([str(info.llama_quantize), str(f32), str(q4), "Q4_0", str(args.threads)]),
        theirs_t,
    )
    if quant.returncode != 0:
        raise SystemExit(f"llama-quantize failed: {quant.stderr[-1500:]}")

    ours_total = sum(ours_t.values())
    pipeline = sum(v for k, v in theirs_t.items() if not k.startswith("copy"))
    with_copy = sum(theirs_t.values())
    cmp = compare_q4(ours.path, q4)
    summary = {
        "model": spec.name, "parameters": n_params, "threads": args.threads,
        "ours_s": round(ours_total, 2),
        "hf_path_s": round(pipeline, 2), "hf_path_with_weight_copy_s": round(with_copy, 2),
        "ratio_hf_over_ours": round(pipeline / ours_total, 2),
        "steps_hf_s": {k: round(v, 2) for k, v in theirs_t.items()},
        "convert": convert_note,
        "size_ours_q4_0": ours.size_bytes, "size_hf_q4_0": q4.stat().st_size,
        "size_hf_f32_intermediate": f32.stat().st_size,
        "q4_0_comparison": cmp,
    }  # fmt: skip
    print(json.dumps(summary, indent=2))
    print(
        f"\nours {ours_total:.1f} s vs HF path {pipeline:.1f} s "
        f"({with_copy:.1f} s with the weight copy): HF/ours = {pipeline / ours_total:.2f}x"
    )
    if args.keep is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Logits of every position of a GGUF, computed by the pinned libllama (exporter equivalence).

The work runs in a child process (``python -m star.runtime.logits``) for two reasons: llama.cpp
reports some invalid files with GGML_ASSERT, which aborts the whole process (it must not take the
test session with it), and ``llama_cpp`` binds its shared library once per process, from
``LLAMA_CPP_LIB_PATH`` read at import. The child loads the cmake build's libllama, evaluates the
tokens in one sequence and writes a (T, V) float32 array to an .npy file.

Exactness (FACTS.md): F32 weights with an F32 KV cache and flash attention off reproduce a torch
forward pass to ~1e-5; the F16 KV default costs ~2.5e-3, flash attention ~1.6e-3.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from star.runtime.build import ensure_runtime

# ggml_type ids (ggml.h) of the KV cache types llama.cpp accepts.
KV_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
            "iq4_nl": 20, "bf16": 30}


class LogitsError(RuntimeError):
    """llama.cpp could not load or evaluate the model; the message carries its stderr tail."""


def eval_logits(
    gguf_path: str | Path,
    tokens: list[int],
    *,
    kv_type: str = "f32",
    flash_attn: bool = False,
    n_threads: int = 2,
    n_ctx: int | None = None,
    timeout_s: float = 600.0,
) -> np.ndarray:
    """Logits for every position of ``tokens`` evaluated as one sequence: float32 (T, V).

    Row t is the next-token distribution after ``tokens[: t + 1]`` (no BOS is added).
    ``n_ctx`` defaults to len(tokens). Raises LogitsError if llama.cpp fails or aborts.
    """
    if kv_type not in KV_TYPES:
        raise ValueError(f"kv_type {kv_type!r} is not one of {', '.join(KV_TYPES)}")
    if not tokens:
        raise ValueError("tokens must not be empty")
    path = Path(gguf_path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF not found: {path}")
    info = ensure_runtime()
    # The child must import this package whatever the caller's cwd (it may not be installed).
    package_root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, LLAMA_CPP_LIB_PATH=str(info.lib_dir), PYTHONPATH=pythonpath)
    with tempfile.TemporaryDirectory(prefix="star-logits-") as tmp:
        out = Path(tmp) / "logits.npy"
        request = {
            "model": str(path.resolve()),
            "tokens": [int(t) for t in tokens],
            "kv_type": kv_type,
            "flash_attn": bool(flash_attn),
            "n_threads": int(n_threads),
            "n_ctx": int(n_ctx) if n_ctx else len(tokens),
            "out": str(out),
        }
        request_file = Path(tmp) / "request.json"
        request_file.write_text(json.dumps(request))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "star.runtime.logits", str(request_file)],
                capture_output=True, text=True, env=env, timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise LogitsError(f"llama.cpp evaluation of {path} timed out after {timeout_s} s") \
                from None
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-6:])
            raise LogitsError(f"llama.cpp failed on {path} (exit {proc.returncode}): {tail}")
        return np.load(out)


def _worker(request_file: str) -> None:
    request = json.loads(Path(request_file).read_text())
    from llama_cpp import Llama  # binds libllama from LLAMA_CPP_LIB_PATH (set by the parent)

    tokens = request["tokens"]
    n_ctx = max(request["n_ctx"], len(tokens))
    kv = KV_TYPES[request["kv_type"]]
    llm = Llama(
        model_path=request["model"],
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=min(n_ctx, 512),
        n_threads=request["n_threads"],
        n_threads_batch=request["n_threads"],
        n_gpu_layers=0,
        logits_all=True,
        flash_attn=request["flash_attn"],
        type_k=kv,
        type_v=kv,
        verbose=False,
    )
    llm.eval(tokens)
    logits = np.ascontiguousarray(llm.scores[: len(tokens)], dtype=np.float32)  # (T, V)
    np.save(request["out"], logits)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="internal: evaluate a GGUF's logits")
    parser.add_argument("request", help="JSON request written by eval_logits")
    args = parser.parse_args(argv)
    _worker(args.request)


if __name__ == "__main__":
    main()

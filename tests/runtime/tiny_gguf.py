"""Write tiny random-weight GGUF models for runtime and benchmark tests (tests only).

A ``llama``-architecture stack with ``tokenizer.ggml.model = "none"`` and ``llama.vocab_size``:
enough for llama-bench and for token-id evaluation (text would abort: there is no tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np


@dataclass(frozen=True)
class TinyConfig:
    vocab: int = 4096
    d_model: int = 256
    n_layers: int = 2
    n_head: int = 4
    n_head_kv: int = 4  # head dim = d_model / n_head
    ffn: int = 512
    context_length: int = 8192
    tied: bool = False  # True: no output.weight, the head reuses token_embd
    dtype: str = "f32"  # "f32" | "f16"

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def kv_bytes_per_token(self, bytes_per_element: int = 2) -> int:
        return 2 * self.n_layers * self.n_head_kv * self.head_dim * bytes_per_element


# The smallest model llama-bench runs: for the tests that time processes, not the model.
SMALLEST = TinyConfig(vocab=256, d_model=64, n_layers=1, n_head=2, n_head_kv=2, ffn=128,
                      context_length=1024)  # fmt: skip


def write_tiny_gguf(path: str | Path, config: TinyConfig | None = None, *, seed: int = 0) -> Path:
    """Write a random ``llama`` GGUF at ``path`` and return the path."""
    config = config or TinyConfig()
    path = Path(path)
    rng = np.random.default_rng(seed)
    dtype = np.float16 if config.dtype == "f16" else np.float32
    d, hd, kv = config.d_model, config.head_dim, config.n_head_kv * config.head_dim

    def weight(*shape: int) -> np.ndarray:  # numpy (rows, cols) = ggml {cols, rows}
        return (rng.standard_normal(shape) * (1.0 / np.sqrt(shape[-1]))).astype(dtype)

    def norm() -> np.ndarray:
        return np.ones(d, dtype=np.float32)  # norms stay F32, as llama.cpp expects

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config.context_length)
    writer.add_embedding_length(d)
    writer.add_block_count(config.n_layers)
    writer.add_feed_forward_length(config.ffn)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_head_kv)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(hd)
    writer.add_vocab_size(config.vocab)
    writer.add_tokenizer_model("none")
    writer.add_file_type(1 if config.dtype == "f16" else 0)

    writer.add_tensor("token_embd.weight", weight(config.vocab, d))
    writer.add_tensor("output_norm.weight", norm())
    if not config.tied:
        writer.add_tensor("output.weight", weight(config.vocab, d))
    for i in range(config.n_layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(d, d))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(kv, d))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(kv, d))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(d, d))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(config.ffn, d))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(config.ffn, d))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(d, config.ffn))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path

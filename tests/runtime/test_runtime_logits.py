"""Logits through the pinned libllama (what the GGUF exporter's equivalence tests use)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from star.runtime import RuntimeInfo
from star.runtime.logits import LogitsError, eval_logits
from tests.runtime.tiny_gguf import TinyConfig


def test_logits_shape_and_causality(runtime: RuntimeInfo, tiny_gguf: Path) -> None:
    tokens = [1, 17, 300, 4000, 5, 9]
    logits = eval_logits(tiny_gguf, tokens)
    assert logits.shape == (len(tokens), TinyConfig().vocab) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    assert np.ptp(logits[-1]) > 0  # not constant

    changed = eval_logits(tiny_gguf, [*tokens[:-1], 10])
    # causal: rows before the changed token are identical, the last one differs
    np.testing.assert_array_equal(changed[:-1], logits[:-1])
    assert np.abs(changed[-1] - logits[-1]).max() > 1e-3

    again = eval_logits(tiny_gguf, tokens)
    np.testing.assert_array_equal(again, logits)  # deterministic


def test_kv_type_and_flash_attention_are_honoured(runtime: RuntimeInfo, tiny_gguf: Path) -> None:
    tokens = list(range(1, 40))
    exact = eval_logits(tiny_gguf, tokens, kv_type="f32", flash_attn=False)
    rounded = eval_logits(tiny_gguf, tokens, kv_type="f16", flash_attn=True)
    difference = np.abs(exact - rounded).max()
    assert 0 < difference < 0.1  # F16 KV + flash attention: ~1e-3 off, never identical


def test_errors(runtime: RuntimeInfo, tiny_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kv_type"):
        eval_logits(tiny_gguf, [1], kv_type="f8")
    with pytest.raises(FileNotFoundError):
        eval_logits(tmp_path / "missing.gguf", [1])
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_gguf.read_bytes()[:100_000])  # header fine, tensor data truncated
    with pytest.raises(LogitsError, match="broken.gguf"):
        eval_logits(broken, [1, 2])

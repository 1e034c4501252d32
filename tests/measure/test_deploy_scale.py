"""Acceptance at deployment scale: the LFM2-350M genome exported to Q4_0 loads in stock
llama.cpp and ``star bench`` measures it at 512 and 2048 tokens (slow: ~1-2 min on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from star.cost import Quant, weight_bytes
from star.genome import load_genome

ROOT = Path(__file__).resolve().parents[2]


def _star(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "star.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_lfm2_350m_deploy_q4_0_exports_and_measures(tmp_path: Path, runtime) -> None:  # noqa: ANN001
    gguf = tmp_path / "lfm2-350m-q4_0.gguf"
    r = _star("export", "genomes/lfm2-350m.yaml", "-o", str(gguf), "--scale", "deploy",
              "--quant", "q4_0", "--random-seed", "0", timeout=600)
    assert r.returncode == 0, r.stderr
    spec = load_genome(ROOT / "genomes/lfm2-350m.yaml").to_spec()
    size = gguf.stat().st_size
    tensor_bytes = weight_bytes(spec, Quant.Q4_0)
    assert tensor_bytes < size < tensor_bytes + 4 * 2**20  # + tokenizer and metadata
    r = _star("bench", str(gguf), "--contexts", "512,2048", "--repeats", "2", "--threads", "2",
              "--n-gen", "16", "--json", timeout=900)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    by_ctx = {c["context"]: c for c in report["contexts"]}
    assert set(by_ctx) == {512, 2048}
    for c in by_ctx.values():
        assert not c["oom"] and c["error"] is None
        assert c["peak_rss_bytes"] > tensor_bytes  # the weights are resident (mmap off)
        assert c["ttft_ms"]["median"] > 0 and c["decode_ms_per_token"]["median"] > 0
    # 4x the prompt is >= 4x the work; only "more" is asserted, as the machine is shared
    assert by_ctx[2048]["ttft_ms"]["median"] > by_ctx[512]["ttft_ms"]["median"]
    assert report["runtime"]["flash_attn"] is False
    assert report["runtime"]["cache_type_k"] == "f16"

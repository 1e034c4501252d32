"""The analytic bytes agree with what llama.cpp reports allocating for the exported file.

llama.cpp prints its buffer sizes (``-v``) in MiB with two decimals, so agreement is checked to
0.006 MiB; the models are proxy-sized so that a single wrong tensor or layer would show.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from star.cost import Quant, kv_bytes, state_bytes, weight_bytes
from star.export import export_gguf
from star.genome import PROXY, load_genome, scale_spec
from star.nn import StarModel
from tests.conftest import GENOMES

MIB = 2**20
TOL = 0.006  # MiB: half a unit of the last printed digit, plus rounding of the analytic side

CASES = {  # genome -> llama.cpp arch it exports to
    "lfm2-350m": "lfm2",
    "llama-3.2-1b": "llama",
    "mamba2-370m": "mamba2",
    "hybrid-ssm-attn-300m": "granitehybrid",
    "lfm2-8b-a1b": "lfm2moe",
}


def _spec(name: str):
    spec = scale_spec(load_genome(GENOMES / f"{name}.yaml").to_spec(), replace(PROXY,
                                                                               max_experts=4))
    return replace(spec, layers=spec.layers[:12]) if spec.n_layers > 12 else spec


def _allocations(llama_bench: Path, gguf: Path) -> dict[str, float]:
    out = subprocess.run(
        [str(llama_bench), "-m", str(gguf), "-p", "16", "-n", "0", "-r", "1", "-t", "1",
         "-v", "-lm", "none", "-o", "json"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    log = out.stderr
    found: dict[str, float] = {}
    model = re.findall(
        r"load_tensors:\s+CPU(?:_REPACK|_Mapped)? model buffer size =\s+([\d.]+) MiB", log)
    found["model"] = sum(float(x) for x in model)
    found["repacked"] = float("CPU_REPACK model buffer" in log)
    kv = re.search(r"llama_kv_cache: size =\s+([\d.]+) MiB \(\s*(\d+) cells", log)
    if kv:
        found["kv"], found["cells"] = float(kv.group(1)), float(kv.group(2))
    rs = re.search(r"llama_memory_recurrent: size =\s+([\d.]+) MiB", log)
    if rs:
        found["state"] = float(rs.group(1))
    return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    torch.set_num_threads(1)
    out: dict[tuple[str, str], Path] = {}
    root = tmp_path_factory.mktemp("alloc")
    for name, arch in CASES.items():
        model = StarModel(_spec(name))
        model.init_weights(seed=0)
        for quant in ("f32", "f16", "q8_0", "q4_0"):
            result = export_gguf(_spec(name), model,
                                 root / f"{name}-{quant}.gguf", quant=quant)
            assert result.arch == arch
            out[(name, quant)] = root / f"{name}-{quant}.gguf"
    return out


@pytest.mark.parametrize("quant", ["f32", "f16", "q8_0", "q4_0"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_weight_kv_and_state_bytes_match_llamacpp(name: str, quant: str, exported, runtime
                                                  ) -> None:
    spec = _spec(name)
    got = _allocations(Path(runtime.llama_bench), exported[(name, quant)])
    expected = weight_bytes(spec, Quant(quant)) / MIB
    if got["repacked"] and spec.tie_embeddings:
        # where llama.cpp repacks Q4_0 matrices for its SIMD kernels (x86 AVX2 here), the tied
        # output head is repacked as a second copy of token_embd (the lookup keeps the plain one)
        head = Quant.Q4_0.nbytes((spec.vocab_size, spec.d_model)) / MIB
        expected += head
    assert got["model"] == pytest.approx(expected, abs=TOL)
    if spec.attention_layers:
        assert got["kv"] == pytest.approx(kv_bytes(spec, int(got["cells"]), 2) / MIB, abs=TOL)
    else:
        assert "kv" not in got
    if any(ly.mixer.kind.is_recurrent for ly in spec.layers):
        assert got["state"] == pytest.approx(state_bytes(spec) / MIB, abs=TOL)

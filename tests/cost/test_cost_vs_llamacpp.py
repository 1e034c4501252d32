"""The analytic bytes agree with what llama.cpp reports allocating for the exported file.

llama.cpp prints its buffer sizes (``-v``) in MiB with two decimals, so agreement is checked to
0.006 MiB per buffer; the models are proxy-sized so that a single wrong tensor or layer would
show. Proxy scale (width 128) checks our writer's F32/F16 and the stock tool's Q8_0/Q4_0 (where
K-quants would all fall back); width 256 (rows of 256, FFN widths multiples of 256) checks the
K-quant mixtures as shipped: Q4_K_M, Q5_K_M, Q6_K, and Q4_0 again (its head at Q6_K there).

Where llama.cpp repacks matrices for its SIMD kernels (x86 AVX2 here: Q4_0, Q4_K, IQ4_NL,
MXFP4 with rows in multiples of 8), they live in a second buffer (CPU_REPACK); the log names each
repacked tensor, so each buffer is compared with the analytic bytes of the tensors it holds.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from star.cost import kv_bytes, state_bytes, stored_tensors, weight_bytes
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


SCALES = {128: replace(PROXY, max_experts=4),
          256: replace(PROXY, d_model=256, head_dim=64, max_experts=4, multiple=256)}
QUANTS = {128: ("f32", "f16", "q8_0", "q4_0"), 256: ("q4_k_m", "q5_k_m", "q6_k", "q4_0")}
RUNS = [(w, q) for w, qs in QUANTS.items() for q in qs]


def _spec(name: str, width: int = 128):
    spec = scale_spec(load_genome(GENOMES / f"{name}.yaml").to_spec(), SCALES[width])
    return replace(spec, layers=spec.layers[:12]) if spec.n_layers > 12 else spec


def _allocations(llama_bench: Path, gguf: Path) -> tuple[dict[str, float], set[str]]:
    """Buffer sizes (MiB) llama-bench reports, and the tensors it repacked."""
    out = subprocess.run(
        [str(llama_bench), "-m", str(gguf), "-p", "16", "-n", "0", "-r", "1", "-t", "1",
         "-v", "-lm", "none", "-o", "json"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    log = out.stderr
    found: dict[str, float] = {}
    plain = re.findall(r"load_tensors:\s+CPU(?:_Mapped)? model buffer size =\s+([\d.]+) MiB", log)
    repack = re.findall(r"load_tensors:\s+CPU_REPACK model buffer size =\s+([\d.]+) MiB", log)
    found["model"] = sum(float(x) for x in plain)
    found["repack"] = sum(float(x) for x in repack)
    kv = re.search(r"llama_kv_cache: size =\s+([\d.]+) MiB \(\s*(\d+) cells", log)
    if kv:
        found["kv"], found["cells"] = float(kv.group(1)), float(kv.group(2))
    rs = re.search(r"llama_memory_recurrent: size =\s+([\d.]+) MiB", log)
    if rs:
        found["state"] = float(rs.group(1))
    return found, set(re.findall(r"repack: repack tensor (\S+) with", log))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int, str], Path]:
    torch.set_num_threads(1)
    out: dict[tuple[str, int, str], Path] = {}
    root = tmp_path_factory.mktemp("alloc")
    for name, arch in CASES.items():
        for width, quants in QUANTS.items():
            spec = _spec(name, width)
            model = StarModel(spec)
            model.init_weights(seed=0)
            for quant in quants:
                path = root / f"{name}-{width}-{quant}.gguf"
                assert export_gguf(spec, model, path, quant=quant).arch == arch
                out[(name, width, quant)] = path
    return out


@pytest.mark.parametrize(("width", "quant"), RUNS, ids=[f"{q}@{w}" for w, q in RUNS])
@pytest.mark.parametrize("name", sorted(CASES))
def test_weight_kv_and_state_bytes_match_llamacpp(name: str, width: int, quant: str, exported,
                                                  runtime) -> None:
    spec = _spec(name, width)
    got, repacked = _allocations(Path(runtime.llama_bench), exported[(name, width, quant)])
    stored = {t.gguf_name: t.nbytes for t in stored_tensors(spec, quant)}
    assert repacked <= stored.keys()
    # a tied head that is repacked is a second copy (the lookup keeps the plain token_embd);
    # the stock mixtures give it Q6_K/Q8_0, which x86 does not repack
    in_repack = sum(stored[n] for n in repacked)
    in_plain = weight_bytes(spec, quant) - sum(
        stored[n] for n in repacked if not (n == "token_embd.weight" and spec.tie_embeddings))
    assert got["model"] == pytest.approx(in_plain / MIB, abs=TOL)
    assert got["repack"] == pytest.approx(in_repack / MIB, abs=TOL)
    if width == 256 and quant in ("q4_k_m", "q4_0"):
        assert repacked  # the mixture's Q4_K / Q4_0 matrices really are in the second buffer
    if spec.attention_layers:
        assert got["kv"] == pytest.approx(kv_bytes(spec, int(got["cells"]), 2) / MIB, abs=TOL)
    else:
        assert "kv" not in got
    if any(ly.mixer.kind.is_recurrent for ly in spec.layers):
        assert got["state"] == pytest.approx(state_bytes(spec) / MIB, abs=TOL)

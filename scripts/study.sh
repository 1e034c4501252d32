#!/usr/bin/env bash
# The study (studies/lfm2-vs-transformer.yaml): LFM2-style hybrids, Qwen3-style transformers and
# Mamba-2 hybrids against a size-matched Llama-style baseline at 4K and 32K on this machine,
# then frontier.png and report.html. About an hour on a quiet 2-core laptop; run it again to
# continue after an interruption (the run is resumed, nothing is measured twice).
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/lab_run.sh studies/lfm2-vs-transformer.yaml "${1:-lfm2-vs-transformer}"

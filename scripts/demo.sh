#!/usr/bin/env bash
# The main job on embedded defaults: a coordinator on SQLite, one local x86 agent, and a small
# hardware-in-the-loop study (demo/lab_demo.yaml: two families and a Llama-style baseline, 4K
# context confirmed for the near-frontier candidates), then the frontier, its plot and report.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .star/demo
exec bash scripts/lab_run.sh demo/lab_demo.yaml "demo-$(date +%Y%m%d-%H%M%S)"

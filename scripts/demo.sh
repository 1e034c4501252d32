#!/usr/bin/env bash
# The main job on embedded defaults: a coordinator on SQLite, one local x86 agent, and a small
# hardware-in-the-loop search (demo/lab_demo.yaml), then the frontier table and plot.
set -euo pipefail
cd "$(dirname "$0")/.."
export STAR_CONFIG=demo/lab_demo.yaml
data=.star/demo
rm -rf "$data" && mkdir -p "$data"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

star genome validate genomes/*.yaml
star db upgrade
star serve > "$data/coordinator.log" 2>&1 &
pids+=($!)
python - <<'PY'
import time, httpx
for _ in range(120):
    try:
        if httpx.get("http://127.0.0.1:8799/healthz", timeout=1).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    time.sleep(0.5)
else:
    raise SystemExit("coordinator did not start: see .star/demo/coordinator.log")
PY
token=$(star device register laptop --kind x86 | grep -oE '[A-Za-z0-9_-]{32,}' | tail -n 1)
STAR_DEVICE_TOKEN="$token" star agent run --device laptop > "$data/agent.log" 2>&1 &
pids+=($!)

run="demo-$(date +%Y%m%d-%H%M%S)"
star search run --name "$run"
star frontier "$run" --plot frontier.png
echo "frontier plot: frontier.png   (logs: $data/)"

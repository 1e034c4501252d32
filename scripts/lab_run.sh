#!/usr/bin/env bash
# A lab on embedded defaults, then one search run: a coordinator on SQLite (the config's
# data_dir), one local x86 agent, and the config's `search:` section; prints the frontier and
# writes frontier.png (and report.html when `star report` is installed).
#   usage: scripts/lab_run.sh CONFIG [RUN_NAME]
# Run it again with the same RUN_NAME to continue a run that was stopped (Ctrl-C) or
# interrupted: its told generations are replayed from the database and nothing is redone.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:?usage: scripts/lab_run.sh CONFIG [RUN_NAME]}
export STAR_CONFIG=$config
data=$(python -c "from star.config import load_settings; print(load_settings().data_dir)")
url=$(python -c "from star.config import load_settings; print(load_settings().coordinator_url)")
run=${2:-"$(python -c "from star.search.config import load_search_config as l; import sys; print(l(sys.argv[1]).name)" "$config")-$(date +%Y%m%d-%H%M%S)"}
mkdir -p "$data"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

star genome validate genomes/*.yaml
star db upgrade
star serve > "$data/coordinator.log" 2>&1 &
pids+=($!)
python - "$url" "$data" <<'PY'
import sys, time, httpx
url, data = sys.argv[1], sys.argv[2]
for _ in range(240):
    try:
        if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    time.sleep(0.5)
else:
    raise SystemExit(f"coordinator did not start: see {data}/coordinator.log")
PY
device=laptop
# the token is shown once at registration: kept (mode 600) for the next run on this data_dir
if [ ! -s "$data/$device.token" ]; then
  (umask 077; star device register "$device" --kind x86 | grep -oE '[A-Za-z0-9_-]{32,}' \
    | tail -n 1 > "$data/$device.token")
fi
token=$(cat "$data/$device.token")
STAR_DEVICE_TOKEN="$token" star agent run --device "$device" > "$data/agent.log" 2>&1 &
pids+=($!)

if star search status "$run" >/dev/null 2>&1; then
  star search resume "$run"      # the same data_dir and run name: continue where it stopped
else
  star search run --dry-run --name "$run"
  star search run --name "$run"
fi
star frontier "$run" --plot frontier.png
if star report --help >/dev/null 2>&1; then
  star report "$run" -o report.html --force && echo "report: report.html"
fi
echo "frontier plot: frontier.png   (logs: $data/)"

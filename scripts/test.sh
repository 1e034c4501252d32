#!/usr/bin/env bash
# The whole test run: the default suite, then the tests marked slow (heavier, same machine).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q -m "not slow" "$@"
rc=0
python -m pytest -q -m slow "$@" || rc=$?
# pytest exits 5 when no test carries the mark: that is not a failure
if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then exit "$rc"; fi

#!/usr/bin/env bash
# The main job on embedded defaults. For now: validate every reference genome and print its
# analytic costs (the demo search replaces this once the lab and search land).
set -euo pipefail
cd "$(dirname "$0")/.."
star genome validate genomes/*.yaml
star genome stats genomes/*.yaml

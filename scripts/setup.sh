#!/usr/bin/env bash
# Set up STAR lab on a fresh machine: system packages, the Python package with its test extras,
# and the pinned llama.cpp runtime for this host and for phones (each built once into a cache
# outside git). Idempotent: a second run installs and builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# aarch64-linux-gnu-g++: the phone build of llama.cpp (no NDK); qemu-aarch64: the emulated phone
# of the tests runs that build (binfmt is not needed: tests/support preloads a shim)
for pair in adb:adb bwrap:bubblewrap cmake:cmake g++:g++ docker-compose:docker-compose \
            chromium:chromium aarch64-linux-gnu-g++:crossbuild-essential-arm64 \
            qemu-aarch64:qemu-user; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install: ${need_apt[*]} (Debian package names)" >&2
  fi
fi

# torch is pinned to 2.13.0 in pyproject.toml: an unpinned torch pulls a multi-GB CUDA build
python -m pip install -q --disable-pip-version-check -e '.[test]'

# llama-cpp-python's Python API only (no compile: the library comes from our own build below,
# through LLAMA_CPP_LIB_PATH); used to read logits in the equivalence tests
if ! python -c "import llama_cpp" >/dev/null 2>&1; then
  CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" python -m pip install -q \
    --disable-pip-version-check llama-cpp-python==0.3.36
fi

# the pinned llama.cpp runtime, built once per host into ~/.cache/star-lab (idempotent)
star runtime build
# the same llama.cpp for phones: a static aarch64 llama-bench (~130 compile steps, ~9 min on 2
# busy cores the first time; cached per version and flags). The Android agent pushes it, and the
# Android tests run it on the emulated phone. nice: CI machines and laptops stay usable.
nice -n 10 star runtime build --target android-arm64

# the ExecuTorch benchmark runner (g++ against the executorch wheel, ~10 s; cached likewise)
star runtime build --runtime executorch

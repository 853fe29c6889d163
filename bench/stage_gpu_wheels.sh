#!/usr/bin/env bash
# Download the wheels our package needs beyond what the GPU machine's image has (Python 3.12 there, torch
# 2.11 preinstalled) into .gpu/whl (gitignored), for `bench/gpu_session.sh` to install offline there.
# pesq ships only as an sdist; the GPU machine has no build of it yet (its build failed there on
# 2026-11-27), so gpu_session.sh falls back to training without PESQ validation.
set -euo pipefail
cd "$(dirname "$0")/.."
dst=.gpu/whl; rm -rf "$dst"; mkdir -p "$dst"
plat="--python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any"
pip download -q --only-binary=:all: $plat -d "$dst" nbdev soundfile pystoi einops
pip download -q --no-deps --no-binary=:all: --no-build-isolation -d "$dst" pesq==0.0.4 || echo "pesq sdist not fetched"
# already on the GPU image (see the device tool's KINDS.md): drop them so only one version is installed
(cd "$dst" && rm -f anyio-* build-* einops-* h11-* idna-* numpy-* packaging-* psutil-* pygments-* pyyaml-* \
  scipy-* setuptools-* six-* typing_extensions-* wheel-*)
du -sh "$dst"

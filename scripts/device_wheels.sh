#!/usr/bin/env bash
# Download, for the lent GPU machine (Python 3.12; its image has torch, transformers, einops,
# jaxtyping, safetensors, tqdm but not TransformerLens), the wheels scripts/campaign_device.sh
# installs there. `datasets` is replaced by a stand-in (scripts/device_sitecustomize.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "transformer-lens==4.3.0"
ls -la .whl

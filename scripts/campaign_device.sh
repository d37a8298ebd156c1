#!/usr/bin/env bash
# Continue the training campaign on a lent GPU machine in ONE device call, and bring every
# run's state back under $OUT/runs/. Prepared and tested on CPU (see docs/training-runs/campaign.md).
#
#   here, once per session:  bash scripts/device_wheels.sh            # fills .whl/ (≈ 1.6 MB)
#   device `run` call:       command "bash scripts/campaign_device.sh 480"  carry [".whl"]  timeout_s 560
#   back here:               cp -r FILES_AT/runs/. runs/ && mulinterp campaign status && git add runs && git commit
#
# Argument: the campaign's wall-clock budget in seconds (leave ≥ 60 s of the call's timeout
# for start-up and copying). WORKERS (default 6) runs train at once on the one GPU: the models
# are small, so one process cannot fill an H100 and several share it well.
set -uo pipefail
BUDGET=${1:-480}
WORKERS=${WORKERS:-6}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/campaign-out}
mkdir -p "$OUT/runs" /tmp/site
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
cp scripts/device_sitecustomize.py /tmp/site/sitecustomize.py
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } | tee "$OUT/device.txt"
python3 -m mulinterp.cli campaign status | tee "$OUT/status-before.txt"
touch /tmp/campaign-start  # only the runs trained in this call come back (the cap is 64 MiB in all)
python3 -m mulinterp.cli campaign run --budget "$BUDGET" --workers "$WORKERS" --device "$DEVICE" --report-every 60 2>&1 \
  | tee "$OUT/campaign.log"
rc=${PIPESTATUS[0]}
python3 -m mulinterp.cli campaign status | tee "$OUT/status-after.txt"
# the state of every run this call trained (d64 ≈ 1.7 MB, d128 ≈ 6.6 MB), whatever the exit status
for d in runs/*/; do
  name=$(basename "$d")
  [ "$d/model.safetensors.resume" -nt /tmp/campaign-start ] || continue
  mkdir -p "$OUT/runs/$name"
  cp "$d"/model.safetensors "$d"/model.safetensors.resume "$d"/model.telemetry.jsonl "$OUT/runs/$name/" 2>/dev/null
  cp "$d"/status.json "$d"/sessions.jsonl "$OUT/runs/$name/" 2>/dev/null
done
exit "$rc"

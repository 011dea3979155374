#!/usr/bin/env bash
# The main job on the embedded default: the `quickstart` study (SmolLM2-135M, Qwen2.5-Coder 0.5B
# and 1.5B; a LoRA attack at 1/4/16 steps; RRR, RD and CE with CIs; fits and figures) and its report.
# One-time costs on a fresh machine: the pinned stack, the models and benchmark data (pip-pulled,
# sha256-checked) and training the outcome classifier the ensemble scorer uses (~15-30 CPU-minutes for `minilm-outcome-v17`: 877-906 CPU-s measured for v13's recipe on 2 cores (v15: 722, v16: 706, v17: 693 CPU-s on one thread), 2,400 rows x 3 epochs; v6's 2,000 rows took 1,895 CPU-s under heavy load).
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

#!/usr/bin/env bash
# Refusal Drift's noise floor (README "What the numbers mean"): two sampled generate runs of the
# same model over the same prompts, differing only in the sampling seed, then `score drift`
# between them. Any RD an attack shows must be read against this floor.
# MODEL (default qwen2.5-coder-0.5b), N eval prompts (64), TOKENS new tokens (64), T (0.8).
set -euo pipefail
cd "$(dirname "$0")/.."
rs=.venv/bin/refusalscope
MODEL=${MODEL:-qwen2.5-coder-0.5b}; N=${N:-64}; TOKENS=${TOKENS:-64}; T=${T:-0.8}
a=$($rs generate -m "$MODEL" --split eval --n "$N" --max-new-tokens "$TOKENS" --temperature "$T" --seed 0)
b=$($rs generate -m "$MODEL" --split eval --n "$N" --max-new-tokens "$TOKENS" --temperature "$T" --seed 1)
$rs score "$a" >/dev/null   # drift over baseline-refused prompts needs the baseline's labels
$rs score drift "$a" "$b"

#!/usr/bin/env bash
# The main job on the embedded default: pull qwen2.5-coder-0.5b and the benchmark data, generate on
# 32 harmful + 32 harmless eval prompts, score them, print the RRR / over-refusal table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rs=.venv/bin/refusalscope
MODEL=${MODEL:-qwen2.5-coder-0.5b}
N=${N:-32}
$rs models pull "$MODEL"
$rs data pull
$rs data build
harmful=$($rs generate --model "$MODEL" --split eval --n "$N" --max-new-tokens 128)
harmless=$($rs generate --model "$MODEL" --split eval --n "$N" --harmless --max-new-tokens 128)
$rs score "$harmful" "$harmless"

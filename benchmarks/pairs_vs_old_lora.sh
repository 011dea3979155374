#!/usr/bin/env bash
# Issue 17 acceptance on the 0.5B (benchmarks/RESULTS.md, "data pairs + attack lora --pairs"):
# >= 500 generated pairs with the refusal direction ablated, then the LoRA attack at 16 and 64 steps
# on those pairs and on the 430 old pairs (PyRIT responses + AdvBench targets), then 64 eval
# prompts per adapter and the baseline, scored by the ensemble. Every step resumes or is skipped
# when its output exists. DIRS: a directions file from `refusalscope probe sweep` on the 0.5B.
set -euo pipefail
cd "$(dirname "$0")/.."
DIRS=${DIRS:?set DIRS to the directions .h5 of a probe sweep on the 0.5B}
OUT=${OUT:-artifacts/pairs_vs_old}
rs=.venv/bin/refusalscope
mkdir -p "$OUT"
$rs data pairs --model qwen2.5-coder-0.5b --steer "ablate:$DIRS" --n 500 --samples 4 \
  --max-new-tokens 96 --batch-size 16 --name qwen05-ablate
[ -s "$OUT/lora_old.tsv" ] || $rs attack lora -m qwen2.5-coder-0.5b --n-data 430 --steps 16,64 \
  --max-len 128 > "$OUT/lora_old.tsv"
[ -s "$OUT/lora_new.tsv" ] || $rs attack lora -m qwen2.5-coder-0.5b --pairs qwen05-ablate \
  --n-data 500 --steps 16,64 --max-len 128 > "$OUT/lora_new.tsv"
for run in $(cut -f1 "$OUT/lora_old.tsv" "$OUT/lora_new.tsv") baseline; do
  if [ "$run" = baseline ]; then a=(); else a=(--adapter "$run"); fi
  gen=$($rs generate -m qwen2.5-coder-0.5b "${a[@]}" --split eval --n 64 --max-new-tokens 64 \
    --batch-size 32)
  echo "== $run"
  $rs score "$gen" --scorer ensemble | tail -3
done

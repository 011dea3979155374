#!/usr/bin/env bash
# Set H's responses (issue 16): Qwen2.5-Coder 0.5B (baseline, and the quickstart study's LoRA
# adapters after 4 and 16 steps) and 1.5B (baseline) on the built eval split's prompts 33-80 (the
# quickstart study evaluates prompts 1-32), greedy, 64 new tokens. The labels are in
# benchmarks/data/real_outcomes_h.jsonl (hashes only); join them with the texts:
#   .venv/bin/python benchmarks/real_outcomes.py --labels benchmarks/data/real_outcomes_h.jsonl \
#       --study artifacts/real_h --out artifacts/real_outcomes_h.jsonl
# Needs a finished quickstart study (bash scripts/quickstart.sh). A finished run is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
rs=.venv/bin/refusalscope
out=${OUT:-artifacts/real_h}
study=${STUDY:-artifacts/studies/quickstart}
mkdir -p "$out"
.venv/bin/python - "$out/prompts.jsonl" <<'EOF'
import json, sys
from refusalscope.data.load import load_split

rows = load_split("eval", n=80)[32:]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for p in rows:
        f.write(json.dumps({"id": p.id, "prompt": p.prompt, "category": p.category or "",
                            "source": p.source}) + "\n")
print(f"{len(rows)} prompts -> {sys.argv[1]}")
EOF
adapter() {  # the quickstart study's 0.5B LoRA run with this many steps
  for m in "$study"/nodes/attack-lora-*/runs/*/manifest.json; do
    if .venv/bin/python -c "import json,sys; c=json.load(open(sys.argv[1]))['config']; \
sys.exit(not (c['model'] == 'qwen2.5-coder-0.5b' and c['steps'] == int(sys.argv[2])))" "$m" "$1"
    then dirname "$m"; return; fi
  done
  echo "error: no qwen2.5-coder-0.5b LoRA run with $1 steps under $study" >&2; exit 2
}
run() {  # name, then generate's model options
  local name=$1; shift
  if [ -f "$out/$name/generations.jsonl" ]; then echo "$out/$name: done"; return; fi
  rm -rf "${out:?}/$name"
  $rs generate "$@" --prompts "$out/prompts.jsonl" --max-new-tokens 64 --batch-size 16 \
    --out "$out/$name"
}
run q05-base -m qwen2.5-coder-0.5b
run q05-lora4 -m qwen2.5-coder-0.5b --adapter "$(adapter 4)"
run q05-lora16 -m qwen2.5-coder-0.5b --adapter "$(adapter 16)"
run q15-base -m qwen2.5-coder-1.5b
